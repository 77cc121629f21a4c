"""The training loops: one per kind of learning, shared by every agent of that kind.

An agent writes only its update; the loop steps the envs, counts steps, records episodes (through
the `EpisodeStats` wrapper that `Run.make_envs` puts around every training env), logs what the update
returns, and asks the run whether to go on (`run.tick`: evaluation, checkpoints, Ctrl-C).

- `on_policy`:  rollouts of n_steps x n_envs, then an update on them (PPO, A2C, REINFORCE).
- `per_step`:   one vector step, then the agent observes the transition (DQN, SQL, tabular TD, bandits).
- `episodes`:   one whole episode, then the agent learns from it (Monte Carlo).
- `sweeps`:     one synchronous sweep of a tabular model per budget step (dynamic programming).
- `offline`:    one gradient step on a minibatch of demonstrations per budget step (imitation).
The envs belong to the run, which made them: it records their state in its checkpoints and closes them.
Pipelines (RLHF: pretraining, reward model, then RL on generated text) drive their own stages.

All envs run behind Gymnasium's vector API in NEXT_STEP autoreset mode (rlgen/envs/__init__.py): the
step that ends an episode returns its true final observation; the next step of that sub-env only
resets it, ignoring the action. `EpisodeStats.valid` marks the steps that are real transitions.

Action masks: where the env offers a mask of valid actions and the agent honours it (its
`config.action_masking`), the loop hands the mask of the observation to the agent's acting call
(`policy_step(obs, mask=)`, `explore(obs, mask=)`) and stores what the update needs: the rollout's masks
(the update's log-probabilities use the same masked distribution), the next observation's masks of a
transition (the bootstrap runs over its valid actions). Other agents are called as they always were.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import gymnasium as gym
import numpy as np

from rlgen.envs import EpisodeStats
from rlgen.run import Diverged, evaluate_runs

if TYPE_CHECKING:
    from rlgen.normalize import Normalizer
    from rlgen.run import Run


def flat(obs: np.ndarray) -> np.ndarray:
    """A batch of observations as float32 rows (N, obs_dim)."""
    return np.asarray(obs, dtype=np.float32).reshape(len(obs), -1)


def honours_masks(agent: Any) -> bool:
    """Whether the agent acts on the env's masks of valid actions (agent.action_masking, rlgen/config.py)."""
    return bool(getattr(getattr(agent, "config", None), "action_masking", False))


def masks_for(agent: Any, envs: Any) -> np.ndarray | None:
    """(n_envs, n_actions) bool masks of the envs' last observations for an agent that honours them; None
    when it does not or the env offers none."""
    return getattr(envs, "last_masks", None) if honours_masks(agent) else None


def with_mask(mask: np.ndarray | None) -> dict[str, np.ndarray]:
    """The keyword an acting call takes a mask by; none when there is no mask, so an agent that knows
    nothing of masks is called as it always was."""
    return {} if mask is None else {"mask": mask}


# -- a group of seeds ------------------------------------------------------------------------------


@dataclass
class Member:
    """One seed of a group of runs trained in lockstep in one process (python -m rlgen.train seeds=S):
    an ordinary agent and its run. A single run is a group of one."""

    agent: Any
    run: Run
    envs: Any = None
    obs: Any = None
    failure: Diverged | None = None
    """why the member left the group early (its loss or statistics diverged); the others go on"""


GroupUpdate = Callable[[list[Any], list["Rollout"], float], list[dict[str, float]]]
GroupObserve = Callable[[list[Any], list["Transition"], int], list[dict[str, float] | None]]


def go_on(members: list[Member], stats: list[dict[str, float] | None]) -> list[Member]:
    """Log each member's statistics and let its run evaluate and checkpoint (`run.tick`; the evaluations
    due are made together, `evaluate_runs`); returns the members that go on. One that diverged or was
    asked to stop leaves; the others are not touched."""
    logged = []
    for m, s in zip(members, stats, strict=True):
        try:
            if s:
                m.run.log(m.agent.num_steps, s)
            logged.append(m)
        except Diverged as err:
            m.failure = err
    evaluations = evaluate_runs([m.run for m in logged], logged[0].agent.num_steps) if logged else {}
    return [m for m in logged if m.run.tick(m.agent.num_steps, evaluations.get(id(m.run)))]


def started(members: list[Member]) -> list[Member]:
    """The members, each with its run's training envs made (or restored) and their first observations."""
    for m in members:
        m.envs, m.obs = m.run.make_envs(m.agent.n_envs)
    return members


def alone(loop: Callable[..., None], members: list[Member], *args: Any) -> None:
    """A group loop run for one agent: its divergence is raised, as the trainer expects of a single run."""
    loop(members, *args)
    if members[0].failure is not None:
        raise members[0].failure


# -- on-policy rollouts ---------------------------------------------------------------------------


@dataclass
class Rollout:
    """What one rollout stores, time-major: (T, N, ...) arrays, `values` with one extra row."""

    obs: np.ndarray
    """(T, N, obs_dim) float32"""
    actions: np.ndarray
    """(T, N) for discrete actions, (T, N, act_dim) for continuous ones: what the policy sampled"""
    log_probs: np.ndarray
    """(T, N) log pi(a_t | s_t) at sampling time"""
    rewards: np.ndarray
    terminated: np.ndarray
    done: np.ndarray
    """terminated | truncated"""
    valid: np.ndarray
    """False on the steps that only reset a sub-env: they are left out of every update"""
    values: np.ndarray
    """(T + 1, N) V(s_t); values[t + 1] is V of the observation step t returned (the true final
    observation when the episode ended there, so a truncation can be bootstrapped from it)"""
    masks: np.ndarray | None = None
    """(T, N, n_actions) bool: the valid actions in s_t the policy sampled from (None: no masks)"""


class OnPolicyAgent(Protocol):
    """An agent of the on-policy loop; one that normalises observations and rewards also has a
    `normalizer` (rlgen/normalize.py), which the loop feeds (`normalizer_of`); one may have a
    `begin_rollout()`, called as each rollout starts (gSDE draws its exploration matrices there)."""

    n_envs: int
    num_steps: int

    def policy_step(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(actions, env_actions, log_probs, values) for a batch of flat observations (an agent that
        honours masks also takes `mask=`, the valid actions of each)."""
        ...

    def value(self, obs: np.ndarray) -> np.ndarray: ...

    def update(self, rollout: Rollout, progress_remaining: float) -> dict[str, float]: ...


def normalizer_of(agent: Any) -> Normalizer | None:
    """The agent's observation and reward normaliser (rlgen/normalize.py); None for an agent without one."""
    return getattr(agent, "normalizer", None)


def _seen(normalizer: Normalizer | None, obs: np.ndarray) -> np.ndarray:
    """A batch of observations as the agent's networks read them: flat, and normalised if it normalises."""
    x = flat(obs)
    return x if normalizer is None else normalizer.obs(x)


def collect_rollout(agent: OnPolicyAgent, envs: EpisodeStats, obs: np.ndarray, n_steps: int
                    ) -> tuple[Rollout, np.ndarray]:
    """n_steps vector steps with the agent's current policy; returns the rollout and the next obs.

    With a normaliser, every observation the policy and the value network read is normalised (also the
    true final observation of an episode, whose value bootstraps a truncation, and the rollout's last),
    each step is counted in its statistics, and the rollout holds the scaled rewards; the episodes the
    run records (EpisodeStats) keep the env's own."""
    normalizer = normalizer_of(agent)
    begin = getattr(agent, "begin_rollout", None)
    if begin is not None:
        begin()
    buf: dict[str, list[np.ndarray]] = {k: [] for k in ("obs", "actions", "log_probs", "rewards", "terminated",
                                                         "done", "valid", "values", "masks")}
    for _ in range(n_steps):
        x = _seen(normalizer, obs)
        mask = masks_for(agent, envs)
        if mask is not None:
            buf["masks"].append(mask)
        actions, env_actions, log_probs, values = agent.policy_step(x, **with_mask(mask))
        obs, reward, terminated, truncated, _ = envs.step(env_actions)
        done = terminated | truncated
        if normalizer is not None:
            reward = normalizer.step(flat(obs), reward, done, envs.valid)
        for key, value in (("obs", x), ("actions", actions), ("log_probs", log_probs), ("values", values),
                           ("rewards", reward), ("terminated", terminated), ("done", done),
                           ("valid", envs.valid)):
            buf[key].append(value)
    buf["values"].append(agent.value(_seen(normalizer, obs)))
    arrays = {k: np.stack(v) for k, v in buf.items() if v}
    for key in ("obs", "log_probs", "rewards", "values"):
        arrays[key] = arrays[key].astype(np.float32)
    return Rollout(**arrays), obs


def on_policy(agent: OnPolicyAgent, run: Run, total_steps: int, n_steps: int) -> None:
    """Collect a rollout, update on it, repeat until the budget is spent (SB3's learn loop)."""
    alone(on_policy_group, [Member(agent, run)], total_steps, n_steps, each_update)


def each_update(agents: list[Any], rollouts: list[Rollout], progress_remaining: float) -> list[dict[str, float]]:
    """Every member's own update on its own rollout (the group update of agents that have no stacked one)."""
    return [a.update(r, progress_remaining) for a, r in zip(agents, rollouts, strict=True)]


def on_policy_group(members: list[Member], total_steps: int, n_steps: int, update: GroupUpdate) -> None:
    """`on_policy` for a group of seeds in lockstep: each collects its rollout in its own envs, then
    `update` takes all of them at once (PPO: one stacked update, rlgen/nets/stack.py)."""
    live = started(members)
    for m in live:
        normalizer = normalizer_of(m.agent)
        if normalizer is not None and m.agent.num_steps == 0:  # a resumed run's were counted before
            normalizer.count_first(flat(m.obs))
    while live and live[0].agent.num_steps < total_steps:
        rollouts = []
        for m in live:
            rollout, m.obs = collect_rollout(m.agent, m.envs, m.obs, n_steps)
            m.agent.num_steps += n_steps * m.agent.n_envs
            rollouts.append(rollout)
        stats = update([m.agent for m in live], rollouts, 1.0 - live[0].agent.num_steps / total_steps)
        live = go_on(live, stats)


# -- one step at a time ---------------------------------------------------------------------------


@dataclass
class Transition:
    """One vector step: (N, ...) arrays. Only rows with `valid` are real transitions."""

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_obs: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    valid: np.ndarray
    info: dict[str, Any]
    masks: np.ndarray | None = None
    """(N, n_actions) bool: the valid actions in obs (None: no masks, or an agent that ignores them)"""
    next_masks: np.ndarray | None = None
    """(N, n_actions) bool: the valid actions in next_obs, over which a bootstrap maximises or sums"""


class PerStepAgent(Protocol):
    n_envs: int
    num_steps: int

    def explore(self, obs: Any) -> np.ndarray:
        """The behaviour policy's actions for a batch of observations (an agent that honours masks also
        takes `mask=`, the valid actions of each)."""
        ...

    def observe(self, t: Transition, total_steps: int) -> dict[str, float] | None:
        """Learn from one vector step (num_steps already counts it); returns statistics to log, if any."""
        ...


def per_step(agent: PerStepAgent, run: Run, total_steps: int) -> None:
    """Act, step, observe; repeat until the budget is spent."""
    alone(per_step_group, [Member(agent, run)], total_steps, each_observe)


def each_observe(agents: list[Any], steps: list[Transition], total_steps: int) -> list[dict[str, float] | None]:
    """Every member observes its own step (the group's observe for agents that have no stacked one)."""
    return [a.observe(t, total_steps) for a, t in zip(agents, steps, strict=True)]


def per_step_group(members: list[Member], total_steps: int, observe: GroupObserve) -> None:
    """`per_step` for a group of seeds in lockstep: each acts and steps its own envs, then `observe`
    takes all their transitions at once (DQN: each observes its own, `each_observe`)."""
    live = started(members)
    while live and live[0].agent.num_steps < total_steps:
        steps = []
        for m in live:
            mask = masks_for(m.agent, m.envs)
            actions = m.agent.explore(m.obs, **with_mask(mask))
            next_obs, reward, terminated, truncated, info = m.envs.step(actions)
            m.agent.num_steps += m.agent.n_envs
            steps.append(Transition(m.obs, actions, reward, next_obs, terminated, truncated, m.envs.valid, info,
                                    mask, masks_for(m.agent, m.envs)))
            m.obs = next_obs
            if m.agent.n_envs == 1 and (terminated[0] or truncated[0]):
                m.obs, _ = m.envs.reset()  # one env: start the next episode now, not on a step that only resets
        live = go_on(live, observe([m.agent for m in live], steps, total_steps))


# -- whole episodes -------------------------------------------------------------------------------


@dataclass
class Episode:
    """One finished episode of a single env."""

    observations: list[Any]
    """o_0 .. o_{T-1}: the observation each action was taken in"""
    actions: list[int]
    rewards: list[float]
    final_obs: Any
    """o_T"""
    terminated: bool
    """False: cut by a time limit (bootstrap from final_obs)"""
    masks: list[np.ndarray] = field(default_factory=list)
    """the valid actions in o_0 .. o_T, where the env offers masks and the agent honours them"""


class EpisodicAgent(Protocol):
    num_steps: int

    def begin(self, envs: gym.vector.VectorEnv) -> tuple[Any, int | None]:
        """Reset for a new episode: (first observation, a forced first action or None)."""
        ...

    def explore(self, obs: Any) -> np.ndarray: ...

    def learn_episode(self, episode: Episode) -> dict[str, float] | None: ...


def _row(obs: Any) -> Any:
    """The single env's observation out of a one-env batch (a tuple of arrays for Tuple spaces)."""
    return tuple(o[0] for o in obs) if isinstance(obs, tuple) else np.asarray(obs)[0]


def episodes(agent: EpisodicAgent, run: Run, total_steps: int) -> None:
    """Play one whole episode, learn from it, repeat until the budget is spent (Monte Carlo).
    The budget counts env steps; the episode in progress is finished, so a run may end a little past it."""
    envs, _ = run.make_envs(1)
    while agent.num_steps < total_steps:
        obs, forced = agent.begin(envs)
        ep = Episode([], [], [], None, False)
        while True:
            mask = masks_for(agent, envs)
            if mask is not None:
                ep.masks.append(mask[0])
            action = int(agent.explore(obs, **with_mask(mask))[0]) if forced is None else forced
            forced = None
            next_obs, reward, terminated, truncated, _ = envs.step(np.array([action]))
            ep.observations.append(_row(obs))
            ep.actions.append(action)
            ep.rewards.append(float(reward[0]))
            obs = next_obs
            if terminated[0] or truncated[0]:
                break
        ep.final_obs, ep.terminated = _row(obs), bool(terminated[0])
        if ep.masks:
            ep.masks.append(masks_for(agent, envs)[0])
        agent.num_steps += len(ep.rewards)
        stats = agent.learn_episode(ep)
        if stats:
            run.log(agent.num_steps, stats)
        if not run.tick(agent.num_steps):
            break


# -- sweeps of a tabular model --------------------------------------------------------------------


class PlanningAgent(Protocol):
    num_steps: int

    def sweep(self, model: Any) -> float:
        """One sweep over the model; returns the sup-norm change of the values."""
        ...

    def converged(self, delta: float) -> bool: ...


def sweeps(agent: PlanningAgent, run: Run, total_steps: int) -> None:
    """One sweep per budget step, `dp/delta` logged, stop early once the agent has converged."""
    model = run.tabular_model()
    while agent.num_steps < total_steps:
        delta = agent.sweep(model)
        agent.num_steps += 1
        run.log(agent.num_steps, {"dp/delta": delta})
        if agent.converged(delta) or not run.tick(agent.num_steps):
            break


# -- gradient steps on a fixed data set -----------------------------------------------------------


class OfflineAgent(Protocol):
    num_steps: int

    def fit_step(self) -> dict[str, float]:
        """One gradient step on a minibatch of the agent's demonstrations; returns statistics to log."""
        ...


def offline(agent: OfflineAgent, run: Run, total_steps: int) -> None:
    """One gradient step per budget step, as `sweeps` counts DP's sweeps: the agent never steps a
    training env; the run's evaluations roll its policy out in the env."""
    while agent.num_steps < total_steps:
        stats = agent.fit_step()
        agent.num_steps += 1
        run.log(agent.num_steps, stats)
        if not run.tick(agent.num_steps):
            break
