"""MuJoCo Warp physics (``backend="warp"``): every env is one world of a single batched ``mujoco_warp`` Data.

The same interface as :class:`sim.physics.ThreadedPhysics`, so the tasks run unchanged on either
backend: ``qpos`` (N, nq), ``qvel`` (N, nv), ``site_xpos`` (N, nsite, 3), ``ctrl`` (N, nu), ``step()``,
``refresh(ids)``, ``datas``/``models``. The state lives in warp arrays on the warp device; torch sees them
through DLPack (``wp.to_torch``, :attr:`WarpPhysics.tensors`) without a copy.

- On warp's CPU device ``qpos``, ``qvel`` and ``site_xpos`` are numpy views of the warp arrays (zero copy),
  so the tasks' numpy logic reads the simulator's memory directly. On a CUDA device they are host copies,
  pulled once per control step (the task logic is numpy; see the README's "Warp backend").
- The state is float32 (MuJoCo Warp's precision); ``ctrl`` stays float64 on the host, since tasks accumulate
  actuator targets in it, and is written into the worlds' float32 ``ctrl`` at each :meth:`step`.
- Resets: tasks write qpos/qvel/ctrl/mocap into ``datas[i]`` (host ``MjData``, as on the CPU backend);
  :meth:`refresh` runs ``mj_forward`` there and scatters the reset worlds' state into the device arrays.
  ``datas`` is brought up to date from the device (state plus ``mj_kinematics``) lazily, only when read
  after a step — by a reset, the renderer, a scripted expert or ee_delta IK.

Kernels compile on first use (minutes on a CPU) into warp's kernel cache (``~/.cache/warp`` unless
``WARP_CACHE_PATH`` is set), so later processes start in seconds.
"""

from __future__ import annotations

import logging

import mujoco
import numpy as np
import torch

try:
    import mujoco_warp as mjw
    import warp as wp
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "backend 'warp' needs the warp extra: pip install 'robo-reward[warp]' (mujoco-warp, warp-lang)"
    ) from exc

wp.config.quiet = True  # no banner
wp.config.log_level = wp.LOG_WARNING  # no line per kernel module compiled or loaded from the cache

# Per-world state a reset writes on the host and the device must receive (host MjData field names).
log = logging.getLogger(__name__)


def _cache_dir() -> str:
    wp.init()
    return str(wp.config.kernel_cache_dir)


STATE_FIELDS = (
    "qpos",
    "qvel",
    "act",
    "ctrl",
    "mocap_pos",
    "mocap_quat",
    "qacc_warmstart",
    "qfrc_applied",
    "xfrc_applied",
    "time",
)


def warp_device(device: str | torch.device) -> str:
    """The warp device for a torch device: ``"cpu"`` or ``"cuda:<index>"``."""
    dev = torch.device(device)
    if dev.type == "cpu":
        return "cpu"
    if dev.type == "cuda":
        return f"cuda:{dev.index or 0}"
    raise ValueError(f"backend 'warp' runs on device 'cpu' or 'cuda[:i]', got {str(device)!r}")


class WarpPhysics:
    """Steps ``num_envs`` worlds of ``model`` with MuJoCo Warp on ``device`` (see the module doc).

    After :meth:`step`: ``qpos``, ``qvel`` and (with ``kinematics``) ``site_xpos`` are current, sites
    recomputed after the last substep as on the CPU backend. ``num_threads`` is accepted for interface
    parity and ignored (warp's CPU device runs kernels on one thread).
    """

    def __init__(
        self,
        model: mujoco.MjModel,
        num_envs: int,
        substeps: int,
        kinematics: bool = False,
        num_threads: int | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        del num_threads
        self.model = model
        self.num_envs = num_envs
        self.substeps = substeps
        self.kinematics = kinematics
        self.device = wp.get_device(warp_device(device))
        self.models = [model] * num_envs
        self._datas = [mujoco.MjData(model) for _ in range(num_envs)]
        mujoco.mj_forward(model, self._datas[0])
        log.info(
            "MuJoCo Warp on %s: kernels compile on first use (minutes on a CPU); cache %s", self.device, _cache_dir()
        )
        with wp.ScopedDevice(self.device):
            self.wmodel = mjw.put_model(model)
            self.wdata = mjw.put_data(model, self._datas[0], nworld=num_envs)
        # torch views (DLPack, zero copy) of the device state, indexed by host MjData field name
        self._state = {name: wp.to_torch(getattr(self.wdata, name)) for name in STATE_FIELDS}
        self._site_xpos = wp.to_torch(self.wdata.site_xpos)  # (N, nsite, 3)
        self._on_cpu = self.device.is_cpu
        self.ctrl = np.zeros((num_envs, model.nu))
        self._applied = self.ctrl
        if self._on_cpu:  # numpy views of the warp arrays: tasks read the simulator's memory
            self.qpos = self._state["qpos"].numpy()
            self.qvel = self._state["qvel"].numpy()
            self.site_xpos = self._site_xpos.numpy()
        else:
            self.qpos = np.zeros((num_envs, model.nq), dtype=np.float32)
            self.qvel = np.zeros((num_envs, model.nv), dtype=np.float32)
            self.site_xpos = np.zeros((num_envs, model.nsite, 3), dtype=np.float32)
        self._host_stale = False  # True once a step ran since ``datas`` was last brought up to date

    @property
    def tensors(self) -> dict[str, torch.Tensor]:
        """torch views on the warp device of ``qpos`` (N, nq), ``qvel`` (N, nv), ``site_xpos`` (N, nsite, 3)."""
        return {"qpos": self._state["qpos"], "qvel": self._state["qvel"], "site_xpos": self._site_xpos}

    @property
    def datas(self) -> list[mujoco.MjData]:
        """Host ``MjData`` per env, current (state, body/site/camera frames) whenever read."""
        if self._host_stale:
            self._sync_host()
        return self._datas

    def own_models(self) -> None:
        raise ValueError(
            "domain randomisation (randomize.enabled) is not supported by backend 'warp' yet: "
            "per-world model parameters would need batched fields in mujoco_warp's Model"
        )

    def step(self, ctrl: np.ndarray | None = None) -> None:
        """Advance every world by ``substeps`` physics steps holding ``ctrl`` (default ``self.ctrl``)."""
        self._applied = self.ctrl if ctrl is None else ctrl
        self._state["ctrl"].copy_(torch.from_numpy(np.ascontiguousarray(self._applied, dtype=np.float32)))
        with wp.ScopedDevice(self.device):
            for _ in range(self.substeps):
                mjw.step(self.wmodel, self.wdata)
            if self.kinematics:
                mjw.kinematics(self.wmodel, self.wdata)
        if not self._on_cpu:  # host copies for the numpy task logic
            self.qpos[:] = self._state["qpos"].cpu().numpy()
            self.qvel[:] = self._state["qvel"].cpu().numpy()
            if self.kinematics:
                self.site_xpos[:] = self._site_xpos.cpu().numpy()
        self._host_stale = True

    def refresh(self, ids: np.ndarray) -> None:
        """Send the envs ``ids``, whose host ``MjData`` state was set directly, to their worlds."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if not len(ids):
            return
        datas = self.datas
        for i in ids:
            mujoco.mj_forward(self.models[i], datas[i])
        index = torch.from_numpy(ids).to(self._site_xpos.device)
        for name, tensor in self._state.items():
            rows = np.stack([np.asarray(getattr(datas[i], name)) for i in ids])
            tensor[index] = torch.from_numpy(rows.reshape(len(ids), *tensor.shape[1:])).to(tensor)
        sites = np.stack([datas[i].site_xpos for i in ids])
        self._site_xpos[index] = torch.from_numpy(sites).to(self._site_xpos)
        if not self._on_cpu:
            self.qpos[ids] = np.stack([datas[i].qpos for i in ids])
            self.qvel[ids] = np.stack([datas[i].qvel for i in ids])
            self.site_xpos[ids] = sites

    def close(self) -> None:
        """Nothing to stop (no threads); kept for interface parity."""

    def _sync_host(self) -> None:
        """Copy every world's state into its host MjData and recompute frames for rendering and IK."""
        host = {name: self._state[name].cpu().numpy() for name in ("qpos", "qvel", "act", "qacc_warmstart", "time")}
        for i, data in enumerate(self._datas):
            data.qpos[:] = host["qpos"][i]
            data.qvel[:] = host["qvel"][i]
            data.act[:] = host["act"][i]
            data.qacc_warmstart[:] = host["qacc_warmstart"][i]
            data.ctrl[:] = self._applied[i]
            data.time = float(host["time"][i])
            mujoco.mj_kinematics(self.models[i], data)
            mujoco.mj_camlight(self.models[i], data)
        self._host_stale = False
