"""Domain randomisation: per-env looks and physics, drawn at every episode reset from the env's RNG.

What a task may randomise is declared in its file (:class:`SceneParts`: which geoms are "object",
"table", "floor", which bodies are the robot and whose mass varies); the ranges live in the task's
``default_config()["randomize"]`` (see :func:`default_config`), off by default, so Hydra overrides reach
every number (``task.randomize.enabled=true task.randomize.light.intensity=[0.4,1.2]``).

MuJoCo keeps colours, lights, cameras, masses, frictions and gains in the ``MjModel``. With randomisation
on, every env gets its own copy of the model (:meth:`sim.physics.ThreadedPhysics.own_models`) and a
reset writes that env's draw into it; physics steps and renders each env with its own model. A copy is
made once and nothing is written per step, so stepping costs what it did (README, "Domain randomisation").
The alternative, one model per thread rewritten before every env's step, would cost field writes under
the GIL on every step. With randomisation off nothing here runs and the shared model stays untouched.

A draw is plain JSON data (:meth:`Randomizer.draw`), and :meth:`Randomizer.apply` sets a model from it
alone, so the parameters stored with a recorded episode are exactly those it was simulated with.
Action latency is a :class:`DelayLine` on the actuator targets: commands reach the actuators k control
steps late, and until then the targets of the reset state hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mujoco
import numpy as np

COLOR_GROUPS = ("object", "table", "floor", "robot")


@dataclass(frozen=True)
class SceneParts:
    """Names in a task's compiled model that randomisation touches; a task file declares its own.

    ``robot_bodies``: every geom of these bodies' subtrees is "robot"; ``mass_bodies``: bodies whose
    mass (and inertia) is scaled by the ``physics.mass`` draw; ``distractors``: whether the scene gets
    the distractor slots of :func:`add_scenery` (tabletop tasks).
    """

    object_geoms: tuple[str, ...] = ()
    table_geoms: tuple[str, ...] = ()
    floor_geoms: tuple[str, ...] = ()
    robot_bodies: tuple[str, ...] = ()
    mass_bodies: tuple[str, ...] = ()
    distractors: bool = False


def default_config(**overrides: Any) -> dict[str, Any]:
    """The ``randomize`` block of a task's config; ``overrides`` replace whole top-level entries.

    A range ``[lo, hi]`` is drawn uniformly; a single number ``j`` is a symmetric jitter ``U(-j, j)`` (a tilt:
    ``U(0, j)``), and a jitter given as ``[lo, hi]`` has a magnitude ``U(lo, hi)`` with a random sign — looks
    strictly outside a ``j = lo`` training range, for a shifted evaluation set.
    Setting a range to ``[1, 1]`` (scales), ``[0, 0]`` (counts, latency) or a jitter to ``0`` turns it off.
    """
    block: dict[str, Any] = {
        "enabled": False,  # off: the shared model is used as built, nothing is drawn
        "color": {  # per-channel RGB shift, one per group and episode (all robot geoms shift alike)
            "object": 0.2,
            "table": 0.25,
            "floor": 0.3,
            "robot": 0.2,
        },
        "light": {
            "intensity": [0.6, 1.4],  # scale of every light's and the headlight's diffuse and ambient
            "color": 0.15,  # per-channel tint jitter of that light
            "direction": 0.5,  # rad, tilt of each light's direction away from its nominal one
        },
        "camera": {
            "position": 0.02,  # m, per axis, in the camera's parent frame
            "rotation": 0.04,  # rad, per axis of a small rotation of the camera
            "fovy": 3.0,  # degrees
        },
        "distractors": {  # non-colliding shapes resting on the table (tasks whose SceneParts ask for them)
            "count": [0, 4],  # how many are shown per episode; the upper end is the number of slots built
            "size": [0.01, 0.03],  # m, half-size
            "low": [0.0, -0.45],  # m, xy region on the table where they are placed...
            "high": [0.8, 0.45],
            "keep_out_low": [0.26, -0.26],  # ...outside this xy box, where the task's objects and goals live
            "keep_out_high": [0.66, 0.26],
        },
        "physics": {
            "mass": [0.5, 2.0],  # scale of the SceneParts.mass_bodies' mass and inertia
            "friction": [0.5, 1.5],  # scale of every geom's sliding friction (so of every contact's)
            "actuator_gain": [0.8, 1.2],  # scale of every actuator's gain (kp of servos, torque of motors)
            "latency": [0, 1],  # control steps between an action and its actuators (integer, inclusive)
        },
    }
    block.update(overrides)
    return block


def add_scenery(spec: mujoco.MjSpec, config: dict[str, Any], floor_z: float) -> None:
    """Add what only randomised scenes have: a floor plane at ``floor_z`` and the distractor slots.

    Distractors neither collide nor have mass (``contype = conaffinity = 0``): they change what a camera
    sees and nothing the expert or the task's success depends on, so a randomised recording keeps the
    expert's success rate. Slots start invisible (alpha 0, under the table); a reset shows some of them.
    """
    no_contact = {"contype": 0, "conaffinity": 0}
    spec.worldbody.add_geom(
        name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[20, 20, 2.0], pos=[0, 0, floor_z],
        rgba=[0.35, 0.35, 0.38, 1], **no_contact,
    )  # fmt: skip
    shapes = (mujoco.mjtGeom.mjGEOM_BOX, mujoco.mjtGeom.mjGEOM_SPHERE, mujoco.mjtGeom.mjGEOM_CYLINDER)
    for k in range(int(config["distractors"]["count"][1])):
        spec.worldbody.add_geom(
            name=f"distractor_{k}", type=shapes[k % len(shapes)], size=[0.02, 0.02, 0.02], pos=[0, 0, -0.5],
            rgba=[0.5, 0.5, 0.5, 0], mass=0, **no_contact,
        )  # fmt: skip


def _geom_ids(model: mujoco.MjModel, names: tuple[str, ...]) -> np.ndarray:
    return np.array([model.geom(name).id for name in names], dtype=np.int64)


def _subtree_geoms(model: mujoco.MjModel, roots: tuple[str, ...]) -> np.ndarray:
    root_ids = {model.body(name).id for name in roots}
    in_tree = np.zeros(model.nbody, dtype=bool)
    for body in range(model.nbody):  # parents come before children in MuJoCo's body order
        in_tree[body] = body in root_ids or (body > 0 and in_tree[model.body_parentid[body]])
    return np.flatnonzero(in_tree[model.geom_bodyid])


def _jitter(rng: np.random.Generator, size: int, amount) -> np.ndarray:
    """``amount`` j: U(-j, j) per entry; ``[lo, hi]``: a magnitude U(lo, hi) with a random sign per entry —
    e.g. an evaluation set whose looks lie outside the training set's ``j = lo``."""
    if isinstance(amount, (list, tuple)):
        lo, hi = (float(b) for b in amount)
        return rng.uniform(lo, hi, size=size) * rng.choice((-1.0, 1.0), size=size)
    amount = float(amount)
    return rng.uniform(-amount, amount, size=size) if amount else np.zeros(size)


def _magnitude(rng: np.random.Generator, amount) -> float:
    """A non-negative draw: ``j`` gives U(0, j), ``[lo, hi]`` gives U(lo, hi)."""
    lo, hi = (float(b) for b in amount) if isinstance(amount, (list, tuple)) else (0.0, float(amount))
    return float(rng.uniform(lo, hi))


def _uniform(rng: np.random.Generator, bounds) -> float:
    lo, hi = (float(b) for b in bounds)
    return float(rng.uniform(lo, hi)) if hi > lo else lo


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cross product of two 3-vectors (np.cross costs ~20 µs of axis handling for this)."""
    return np.array([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


def _tilt(direction: np.ndarray, angle: float, azimuth: float) -> np.ndarray:
    """``direction`` (3,) turned by ``angle`` toward the azimuth ``azimuth`` about it."""
    d = direction / np.linalg.norm(direction)
    helper = np.array([1.0, 0.0, 0.0]) if abs(d[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = _cross(d, helper)
    u /= np.linalg.norm(u)
    v = _cross(d, u)
    return np.cos(angle) * d + np.sin(angle) * (np.cos(azimuth) * u + np.sin(azimuth) * v)


class Randomizer:
    """Draws per-env scene parameters and writes them into that env's own model.

    Built from the shared model *after* the task has set it up (its base values are the un-randomised
    scene); ``config`` is the task's ``randomize`` block.
    """

    def __init__(self, model: mujoco.MjModel, parts: SceneParts, config: dict[str, Any]) -> None:
        self.config = config
        self.groups = {
            "object": _geom_ids(model, parts.object_geoms),
            "table": _geom_ids(model, parts.table_geoms),
            "floor": _geom_ids(model, parts.floor_geoms),
            "robot": _subtree_geoms(model, parts.robot_bodies),
        }
        self.mass_bodies = np.array([model.body(name).id for name in parts.mass_bodies], dtype=np.int64)
        self.cameras = [model.camera(c).name for c in range(model.ncam)]
        slots = range(int(config["distractors"]["count"][1])) if parts.distractors else ()
        self.distractors = np.array([model.geom(f"distractor_{k}").id for k in slots], dtype=np.int64)
        # base values: what apply() scales and shifts
        self.geom_rgba = model.geom_rgba.copy()
        self.light_diffuse = model.light_diffuse.copy()
        self.light_ambient = model.light_ambient.copy()
        self.light_dir = model.light_dir.copy()
        self.headlight = (model.vis.headlight.ambient.copy(), model.vis.headlight.diffuse.copy())
        self.cam_pos, self.cam_quat, self.cam_fovy = model.cam_pos.copy(), model.cam_quat.copy(), model.cam_fovy.copy()
        self.body_mass, self.body_inertia = model.body_mass.copy(), model.body_inertia.copy()
        self.geom_friction = model.geom_friction.copy()
        self.gainprm, self.biasprm = model.actuator_gainprm.copy(), model.actuator_biasprm.copy()
        self.max_latency = int(config["physics"]["latency"][1])
        self._scratch = mujoco.MjData(model)  # for mj_setConst, which overwrites the state of the data it gets

    def draw(self, rng: np.random.Generator) -> dict[str, Any]:
        """One env's parameters for one episode: plain floats and lists (JSON-ready)."""
        cfg = self.config
        color = {group: _jitter(rng, 3, cfg["color"][group]).tolist() for group in COLOR_GROUPS}
        light_cfg = cfg["light"]
        light = {
            "intensity": _uniform(rng, light_cfg["intensity"]),
            "color": (1.0 + _jitter(rng, 3, light_cfg["color"])).tolist(),
            "direction": [
                _tilt(d, _magnitude(rng, light_cfg["direction"]), rng.uniform(-np.pi, np.pi)).tolist()
                for d in self.light_dir
            ],
        }
        cam_cfg = cfg["camera"]
        camera = {
            name: {
                "position": _jitter(rng, 3, cam_cfg["position"]).tolist(),
                "rotation": _jitter(rng, 3, cam_cfg["rotation"]).tolist(),
                "fovy": float(_jitter(rng, 1, cam_cfg["fovy"])[0]),
            }
            for name in self.cameras
        }
        physics_cfg = cfg["physics"]
        low, high = (int(b) for b in physics_cfg["latency"])
        physics = {
            "mass": _uniform(rng, physics_cfg["mass"]),
            "friction": _uniform(rng, physics_cfg["friction"]),
            "actuator_gain": _uniform(rng, physics_cfg["actuator_gain"]),
            "latency": int(rng.integers(low, high + 1)),
        }
        return {
            "color": color,
            "light": light,
            "camera": camera,
            "distractors": self._draw_distractors(rng),
            "physics": physics,
        }

    def _draw_distractors(self, rng: np.random.Generator) -> list[dict[str, Any]]:
        if not len(self.distractors):
            return []
        cfg = self.config["distractors"]
        count = int(rng.integers(int(cfg["count"][0]), len(self.distractors) + 1))
        low, high = np.array(cfg["low"], dtype=float), np.array(cfg["high"], dtype=float)
        out_low, out_high = np.array(cfg["keep_out_low"], dtype=float), np.array(cfg["keep_out_high"], dtype=float)
        shown = []
        for _ in range(count):
            for _attempt in range(100):  # rejection sampling: the region around the keep-out box is large
                xy = rng.uniform(low, high)
                if not ((xy >= out_low) & (xy <= out_high)).all():
                    break
            size = _uniform(rng, cfg["size"])
            shown.append({"xy": xy.tolist(), "size": size, "rgb": rng.uniform(0, 1, size=3).tolist()})
        return shown

    def apply(self, model: mujoco.MjModel, params: dict[str, Any]) -> None:
        """Set ``model`` (an env's own copy) to the base scene changed by ``params`` (from :meth:`draw`)."""
        rgba = self.geom_rgba.copy()
        for group, ids in self.groups.items():
            if len(ids):
                rgba[ids, :3] = np.clip(rgba[ids, :3] + params["color"][group], 0.0, 1.0)
        light = params["light"]
        tint = light["intensity"] * np.asarray(light["color"])
        model.light_diffuse[:] = np.clip(self.light_diffuse * tint, 0.0, 1.0)
        model.light_ambient[:] = np.clip(self.light_ambient * tint, 0.0, 1.0)
        model.light_dir[:] = light["direction"]
        model.vis.headlight.ambient[:] = np.clip(self.headlight[0] * tint, 0.0, 1.0)
        model.vis.headlight.diffuse[:] = np.clip(self.headlight[1] * tint, 0.0, 1.0)
        for c, name in enumerate(self.cameras):
            cam = params["camera"][name]
            model.cam_pos[c] = self.cam_pos[c] + cam["position"]
            turn = np.empty(4)
            angle = float(np.linalg.norm(cam["rotation"]))
            mujoco.mju_axisAngle2Quat(turn, np.asarray(cam["rotation"]) / max(angle, 1e-12), angle)
            mujoco.mju_mulQuat(model.cam_quat[c], self.cam_quat[c], turn)
            model.cam_fovy[c] = self.cam_fovy[c] + cam["fovy"]
        for k, geom in enumerate(self.distractors):
            shown = params["distractors"][k] if k < len(params["distractors"]) else None
            if shown is None:
                rgba[geom, 3] = 0.0
                model.geom_pos[geom] = (0.0, 0.0, -0.5)
                continue
            rgba[geom] = (*shown["rgb"], 1.0)
            model.geom_size[geom] = shown["size"]
            model.geom_pos[geom] = (*shown["xy"], shown["size"])
        model.geom_rgba[:] = rgba
        phys = params["physics"]
        model.body_mass[:] = self.body_mass
        model.body_inertia[:] = self.body_inertia
        if len(self.mass_bodies):
            model.body_mass[self.mass_bodies] *= phys["mass"]
            model.body_inertia[self.mass_bodies] *= phys["mass"]
        model.geom_friction[:] = self.geom_friction
        model.geom_friction[:, 0] *= phys["friction"]
        model.actuator_gainprm[:] = self.gainprm
        model.actuator_biasprm[:] = self.biasprm
        model.actuator_gainprm[:, 0] *= phys["actuator_gain"]
        model.actuator_biasprm[:, 1] *= phys["actuator_gain"]  # a servo's -kp term: the target stays put
        # constants derived from masses and poses (the solver's inverse weights, actuator_acc0, cam_pos0...):
        # stale ones made a half-mass cube take half the velocity a push should give it
        mujoco.mj_setConst(model, self._scratch)


class DelayLine:
    """Actuator targets that arrive ``latency[i]`` control steps late, per env.

    ``history[:, k]`` holds the targets commanded k steps ago; a reset fills an env's history with its
    reset targets, which therefore hold until the first delayed command arrives.
    """

    def __init__(self, num_envs: int, nu: int, max_latency: int) -> None:
        self.history = np.zeros((num_envs, max_latency + 1, nu))
        self.latency = np.zeros(num_envs, dtype=np.int64)
        self._rows = np.arange(num_envs)

    def reset(self, ids: np.ndarray, ctrl: np.ndarray, latency: np.ndarray) -> None:
        """Envs ``ids`` start with targets ``ctrl`` (len(ids), nu) and delays ``latency`` (len(ids),)."""
        self.history[ids] = ctrl[:, None, :]
        self.latency[ids] = latency

    def push(self, ctrl: np.ndarray) -> np.ndarray:
        """Take this step's commanded targets (N, nu); return the targets the actuators get (N, nu)."""
        self.history[:, 1:] = self.history[:, :-1]
        self.history[:, 0] = ctrl
        return self.history[self._rows, self.latency]
