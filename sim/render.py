"""Batched multi-view offscreen rendering with one GL context made once and reused.

Every (env, camera) view is drawn into its own viewport tile of one large offscreen buffer and the
whole buffer is read back with a single ``mjr_readPixels`` — one GPU→CPU transfer per batch instead
of one per image. Shadows, reflections and the skybox are off by default: on a software renderer
(Mesa llvmpipe) shadows alone cost ~50×.
"""

from __future__ import annotations

import math

import mujoco
import numpy as np

from sim.sigint import sigint_held

MAX_BUFFER_SIDE = 4096


def preload_triton() -> None:
    """Load triton's LLVM before Mesa's: with llvmpipe loaded first, torch's later (lazy) import of
    triton — e.g. when an optimizer is created after rendering — segfaults on clashing LLVM symbols.
    The other order works. Triton ships with torch's CUDA wheels; where it is absent, nothing to do.
    EGL loads Mesa when the first context is made; OSMesa when mujoco is imported (see sim/__init__)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        pass


def make_gl_context(width: int, height: int):
    """A GL context from the backend in ``MUJOCO_GL`` (egl by default, osmesa as fallback)."""
    if not hasattr(mujoco, "GLContext"):
        raise RuntimeError("no offscreen GL backend: set MUJOCO_GL=egl (or osmesa) before importing mujoco")
    try:
        with sigint_held():  # a Ctrl-C in here is lost (triton) or half-makes the context: deliver it after
            preload_triton()
            return mujoco.GLContext(width, height)
    except Exception as exc:  # the backend names what is missing (libEGL, libOSMesa)
        raise RuntimeError(
            f"could not create a {type(mujoco.GLContext).__name__} GL context ({exc}); install "
            "libegl1 libgl1 libosmesa6 or set MUJOCO_GL=osmesa"
        ) from exc


def disable_costly_effects(scene: mujoco.MjvScene) -> None:
    """Turn off what a software renderer pays most for and learning from pixels does not need."""
    for flag in (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION, mujoco.mjtRndFlag.mjRND_SKYBOX):
        scene.flags[flag] = 0


def camera_ids(model: mujoco.MjModel, cameras: tuple[str, ...]) -> list[int]:
    ids = []
    for name in cameras:
        cam = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, name)
        if cam < 0:
            known = [model.camera(i).name for i in range(model.ncam)]
            raise ValueError(f"unknown camera {name!r}; this scene has {known}")
        ids.append(cam)
    return ids


class BatchRenderer:
    """Renders uint8 images (N, V, H, W, 3) of N MjData from V named cameras.

    The MjData must hold current kinematics; :meth:`render` recomputes the camera and light
    frames (``mj_camlight``) itself because ``mj_step`` leaves them one substep behind.
    """

    def __init__(
        self, model: mujoco.MjModel, num_envs: int, cameras: tuple[str, ...], height: int = 64, width: int = 64
    ) -> None:
        self.model = model
        self.height, self.width = height, width
        self.cam_ids = camera_ids(model, cameras)
        tiles = num_envs * len(cameras)
        self.cols = max(1, min(tiles, MAX_BUFFER_SIDE // width, math.ceil(math.sqrt(tiles * height / width))))
        self.rows = max(1, min(math.ceil(tiles / self.cols), MAX_BUFFER_SIDE // height))
        buf_w, buf_h = self.cols * width, self.rows * height
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, buf_w)
        model.vis.global_.offheight = max(model.vis.global_.offheight, buf_h)
        self._gl = make_gl_context(buf_w, buf_h)
        self._gl.make_current()
        self._context = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_50)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._context)
        self._scene = mujoco.MjvScene(model, maxgeom=1000)
        disable_costly_effects(self._scene)
        self._option = mujoco.MjvOption()
        self._perturb = mujoco.MjvPerturb()
        self._camera = mujoco.MjvCamera()
        self._camera.type = mujoco.mjtCamera.mjCAMERA_FIXED
        self._full = mujoco.MjrRect(0, 0, buf_w, buf_h)
        self._pixels = np.empty((buf_h, buf_w, 3), dtype=np.uint8)
        self._rects = [
            mujoco.MjrRect((t % self.cols) * width, (t // self.cols) * height, width, height)
            for t in range(self.rows * self.cols)
        ]

    def render(self, datas: list[mujoco.MjData], models: list[mujoco.MjModel] | None = None) -> np.ndarray:
        """``models[i]`` (default: the model the renderer was made with) is ``datas[i]``'s own model, e.g. one
        with randomised colours, lights and cameras; it must be a copy of that model (same meshes and textures)."""
        models = models if models is not None else [self.model] * len(datas)
        views = len(self.cam_ids)
        out = np.empty((len(datas), views, self.height, self.width, 3), dtype=np.uint8)
        flat = out.reshape(len(datas) * views, self.height, self.width, 3)
        self._gl.make_current()
        for model, data in zip(models, datas, strict=True):
            mujoco.mj_camlight(model, data)
        per_page = len(self._rects)
        for start in range(0, len(flat), per_page):
            count = min(per_page, len(flat) - start)
            for t in range(count):
                env, view = divmod(start + t, views)
                self._camera.fixedcamid = self.cam_ids[view]
                mujoco.mjv_updateScene(
                    models[env],
                    datas[env],
                    self._option,
                    self._perturb,
                    self._camera,
                    mujoco.mjtCatBit.mjCAT_ALL,
                    self._scene,
                )
                mujoco.mjr_render(self._rects[t], self._scene, self._context)
            mujoco.mjr_readPixels(self._pixels, None, self._full, self._context)
            tiles = self._pixels.reshape(self.rows, self.height, self.cols, self.width, 3).swapaxes(1, 2)
            tiles = tiles.reshape(self.rows * self.cols, self.height, self.width, 3)[:count]
            flat[start : start + count] = tiles[:, ::-1]
        return out

    def close(self) -> None:
        if self._gl is not None:
            self._context.free()
            self._gl.free()
            self._gl = None
