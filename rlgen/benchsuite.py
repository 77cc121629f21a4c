"""What a benchmark is: a suite (agents x envs x seeds x budgets), the command's options, and the plan
of runs they make. Shared by the runner (rlgen.bench) and the report (rlgen.benchreport)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from rlgen.errors import UserError, unknown

BACKENDS = ("process", "ray")
METRICS = ("return", "dp_error", "success", "alignment", "imitation")


@dataclass
class Variant:
    """A label that stands for an agent or an env with config overrides, e.g. `ibc_langevin`: ibc with
    agent.inference=langevin, or `Step2`: Step with env.two_valued=true. Suite tables keyed by the base
    name apply to the variant too, then those keyed by its label."""

    agent: str = ""
    """the agent it is a variant of (or env, not both)"""
    env: str = ""
    """the env it is a variant of"""
    overrides: list[str] = field(default_factory=list)
    """config overrides that make the variant, applied after the base's selection"""
    evaluate_only: bool = False
    """agent variants: no training of its own; the base agent's trained runs (same env, seed, budget)
    are loaded and evaluated with these overrides, for settings that change only how it acts (a
    sampler): the same model compared under both, at the cost of an evaluation"""

    builds_on: str = ""
    """agent variants of an agent that builds on a trained run (Agent.builds_on: gail's expert=, dppo's
    init=): the label of the suite's agent whose run on the same env is handed to it, trained first"""
    builds_on_seed: int | None = None
    """the seed of that run (default: the same seed as this run's)"""
    seeds: list[int] = field(default_factory=list)
    """agent variants: run only these of the suite's seeds (e.g. one expert per env); default: all"""

    def __post_init__(self) -> None:
        if bool(self.agent) == bool(self.env):
            raise UserError("a variant names exactly one base: agent: <name> or env: <name>")
        if self.evaluate_only and not self.agent:
            raise UserError("evaluate_only applies to agent variants (a trained model acting differently)")
        if (self.builds_on or self.seeds) and not self.agent:
            raise UserError("builds_on and seeds apply to agent variants")


@dataclass
class Suite:
    name: str = MISSING
    description: str = ""
    agents: list[str] = MISSING
    """agents that must be registered"""
    optional_agents: list[str] = field(default_factory=list)
    """agents included only when registered (being written); the report says which were absent"""
    envs: list[str] = MISSING
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    agent_seeds: dict[str, list[int]] = field(default_factory=dict)
    """per "agent", "env" or "agent/env" (the most specific match): the seeds it runs, when not `seeds`
    (more where a verdict needs them, fewer for agents that are only shown)"""
    steps: dict[str, int] = field(default_factory=dict)
    """budget per "agent/env", "agent" or "env" (first match); default: the tuned total_steps"""
    step_sweep: dict[str, list[int]] = field(default_factory=dict)
    """budgets per "all", "agent", "env" or "agent/env" (last match): each (agent, env, seed) is run
    at every one of them, so error against steps is a curve of independent runs"""
    overrides: dict[str, list[str]] = field(default_factory=dict)
    """config overrides per "all", "agent", "env" or "agent/env", applied in that order"""
    exclude: list[str] = field(default_factory=list)
    """"agent/env" combinations not to run (an agent that cannot work on that env)"""
    pairs: dict[str, str] = field(default_factory=dict)
    """ours -> the SB3 agent it is compared with"""
    metric: str = "return"
    """return (final evaluation return) | dp_error (error to the dynamic-programming optimum) | success
    (the success rate, rlgen.benchgen) | alignment (gold reward against KL, rlgen.benchalign) | imitation
    (GAIL and BC against the expert, DPPO against its start: rlgen.benchimit)"""
    gamma: float = 0.99
    """dp_error: discount of the optimum when the agent's config has no gamma"""
    dp_tolerance: float = 0.01
    """dp_error: a run "reaches the threshold" at the first budget whose policy gap is below this"""
    runs_per_process: int = 1
    """runs done by one worker process before it is replaced: 1 measures each run's own peak memory;
    more saves the interpreter start-up (seconds) that dominates tiny tabular runs"""
    notes: list[str] = field(default_factory=list)
    """printed in the report (budget cuts and why)"""
    variants: dict[str, Variant] = field(default_factory=dict)
    """labels used in agents / optional_agents / envs that stand for a base agent or env with overrides"""

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise UserError(f"metric must be one of {', '.join(METRICS)}, got '{self.metric}'")
        for label, v in self.variants.items():
            listed = self.envs if v.env else self.agents + self.optional_agents
            if label in (v.agent, v.env) or (v.agent or v.env) in self.variants:
                raise UserError(f"variant {label}: its base must be a plain agent or env, not itself or a variant")
            if label not in listed:
                kind = "envs" if v.env else "agents or optional_agents"
                raise UserError(f"variant {label} (of {v.agent or v.env}) is not listed in {kind}")
            if v.builds_on and v.builds_on not in self.agents + self.optional_agents:
                raise UserError(f"variant {label} builds on {v.builds_on}, which is not listed in agents")
            if v.builds_on and v.builds_on in self.variants and self.variants[v.builds_on].builds_on:
                raise UserError(f"variant {label} builds on {v.builds_on}, which builds on another run itself")
        if self.runs_per_process < 1:
            raise UserError(f"runs_per_process must be >= 1, got {self.runs_per_process}")
        lists = {"seeds": self.seeds, **{f"agent_seeds.{a}": s for a, s in self.agent_seeds.items()}}
        for label, seeds in lists.items():
            if not seeds or min(seeds) < 0:
                raise UserError(f"{label} must be a non-empty list of seeds >= 0, got {seeds}")
        agents, envs = self.agents + self.optional_agents, self.envs
        known = {*agents, *envs, *(f"{a}/{e}" for a in agents for e in envs)}
        unknown_keys = sorted(set(self.agent_seeds) - known)
        if unknown_keys:
            raise UserError(f"agent_seeds names {', '.join(unknown_keys)}: a key is an agent or env the suite "
                            "lists, or agent/env")


@dataclass
class Options:
    """Run every run of a suite (benchmarks/suites/<suite>.yaml, or a path to a YAML file) that is not
    done yet, then write its report (REPORT.md, figures, results.json). A report is not replaced by
    one with fewer completed runs unless force=true."""

    backend: str = "process"
    """process (a local pool) | ray"""
    workers: int = 0
    """parallel runs (0: every core)"""
    seeds: int = 0
    """run only the suite's first N seeds (0: all); the report is then marked as cut"""
    budget_scale: float = 1.0
    """multiply every budget (and eval interval) by this; below 1 the report is marked as cut"""
    evals: int = 0
    """evaluations per run, evenly spaced (0: every tuned eval_every steps)"""
    eval_episodes: int = 0
    """episodes per evaluation (0: the suite's); fewer marks the report as cut"""
    agents: list[str] = field(default_factory=list)
    """a subset of the suite's agents (empty: all)"""
    envs: list[str] = field(default_factory=list)
    """a subset of the suite's envs (empty: all)"""
    logdir: str = ""
    """where the runs go (default runs/bench/<suite>[-cut])"""
    out: str = ""
    """where the report goes (default benchmarks/results/<suite>[-cut])"""
    report_only: bool = False
    """write the report from the runs that exist, run nothing"""
    force: bool = False
    """replace the report at out even when the new one has fewer completed runs"""
    reuse: bool = True
    """count the completed runs the report at out records (results.json) as done when their config and
    package versions are this job's and this machine's, as completed run directories are; false: run them"""
    ray_address: str = ""
    """an existing Ray cluster to join (default: RAY_ADDRESS, else a local instance)"""
    group: int = 8
    """train up to this many seeds of one agent, env and budget in one process, where the agent learns
    seeds in groups (PPO, DQN, SQL; python -m rlgen.train seeds=S); 1: one run per process"""

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise unknown("backend", self.backend, BACKENDS)
        if not 0 < self.budget_scale <= 1:
            raise UserError(f"budget_scale must be in (0, 1], got {self.budget_scale}")
        if self.group < 1:
            raise UserError(f"group must be a number of seeds per process, 1 or more, got {self.group}")
        for name in ("workers", "seeds", "evals", "eval_episodes"):
            if getattr(self, name) < 0:
                raise UserError(f"{name} must be >= 0, got {getattr(self, name)}")

    @property
    def cut(self) -> bool:
        return self.seeds > 0 or self.budget_scale < 1.0 or self.eval_episodes > 0


@dataclass
class Job:
    agent: str
    """the agent's label in the suite (a variant's label, or the agent's name)"""
    env: str
    seed: int
    budget: int
    run_dir: str
    overrides: list[str]
    source: str = ""
    """an evaluation-only job: the run directory of the trained run it evaluates ("": a training run)"""
    after: str = ""
    """the run directory this run builds on (expert= or init=), which must be trained first"""


def _suite_roots() -> list[Path]:
    beside_package = Path(__file__).resolve().parents[1]
    return [Path.cwd() / "benchmarks" / "suites", beside_package / "benchmarks" / "suites"]


def known_suites() -> list[str]:
    return sorted({p.stem for r in _suite_roots() if r.is_dir() for p in r.glob("*.yaml")})


def find_suite(name: str) -> Path:
    """A path to a YAML file, or a suite name under benchmarks/suites (here or beside the package)."""
    if name.endswith((".yaml", ".yml")):
        if not Path(name).is_file():
            raise UserError(f"suite file '{name}' does not exist")
        return Path(name)
    for root in _suite_roots():
        if (root / f"{name}.yaml").is_file():
            return root / f"{name}.yaml"
    raise unknown("suite", name, known_suites())


def load_suite(path: Path) -> Suite:
    try:
        suite = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Suite), OmegaConf.load(path)))
    except OmegaConfBaseException as err:
        first = str(err).splitlines()[0]
        raise UserError(f"suite {path}: {first}") from None
    except UserError as err:
        raise UserError(f"suite {path}: {err}") from None
    assert isinstance(suite, Suite)
    return suite


def _subset(chosen: list[str], available: list[str], kind: str) -> list[str]:
    for c in chosen:
        if c not in available:
            raise unknown(f"{kind} in this suite", c, available)
    return chosen or available


def base(suite: Suite, label: str) -> str:
    """The agent or env a label stands for: a variant's base, else the label itself."""
    v = suite.variants.get(label)
    return (v.agent or v.env) if v is not None else label


def suite_agents(suite: Suite) -> tuple[list[str], list[str]]:
    """(agents to run, optional agents that are not registered yet); a variant is registered when its
    base agent is."""
    from rlgen.agents import AGENTS

    for name in suite.agents:
        if base(suite, name) not in AGENTS:
            raise unknown("agent", base(suite, name), AGENTS)
    absent = [a for a in suite.optional_agents if base(suite, a) not in AGENTS]
    return suite.agents + [a for a in suite.optional_agents if a not in absent], absent


def _lookup(table: dict[str, Any], agent: str | list[str], env: str | list[str]) -> list[Any]:
    """The entries of a suite table that apply, in order: "all", the agent('s names: base, then
    label), the env('s), then "agent/env" for every pair of their names."""
    agents, envs = [agent] if isinstance(agent, str) else agent, [env] if isinstance(env, str) else env
    keys = dict.fromkeys(["all", *agents, *envs, *(f"{a}/{e}" for a in agents for e in envs)])
    return [table[k] for k in keys if k in table]


def _names(suite: Suite, label: str) -> list[str]:
    return list(dict.fromkeys([base(suite, label), label]))


def plan(suite: Suite, opts: Options, logdir: Path) -> list[Job]:
    """One Job per (env, agent, budget, seed); budgets are the tuned config's unless the suite sets them.
    An evaluate_only variant's jobs come after its base's, whose runs they evaluate."""
    agents = _subset(opts.agents, suite_agents(suite)[0], "agent")
    envs = _subset(opts.envs, suite.envs, "env")
    jobs: list[Job] = []
    for env in envs:
        for agent in [a for a in agents if not _evaluate_only(suite, a)]:
            own = next(iter(reversed(_lookup(suite.agent_seeds, agent, env))), suite.seeds)
            seeds = own[: opts.seeds] if opts.seeds else own
            chosen = [s for s in seeds if s in suite.variants[agent].seeds] if _narrowed(suite, agent) else seeds
            jobs += _training_jobs(suite, opts, logdir, agent, env, chosen)
        for agent in agents:
            if _evaluate_only(suite, agent):
                jobs += _evaluation_jobs(suite, logdir, agent, env, jobs)
    planned = {j.run_dir for j in jobs}
    for job in jobs:
        if job.after and job.after not in planned and not (Path(job.after) / "checkpoint.json").is_file():
            needed = suite.variants[job.agent].builds_on
            raise UserError(f"{job.agent} builds on the runs of {needed}, which this plan does not train on "
                            f"{job.env} (seed {Path(job.after).name.removeprefix('seed')}); add {needed} to agents=")
    return jobs


def _narrowed(suite: Suite, label: str) -> bool:
    return label in suite.variants and bool(suite.variants[label].seeds)


def _foundation(suite: Suite, logdir: Path, agent: str, env: str, seed: int) -> list[str]:
    """expert=<dir> / init=<dir> for an agent variant that builds on another label's run."""
    from rlgen.agents import agent_class

    variant = suite.variants.get(agent)
    if variant is None or not variant.builds_on:
        return []
    key = (agent_class(variant.agent).builds_on or ("", ""))[0]
    if not key:
        raise UserError(f"variant {agent}: agent {variant.agent} builds on no run (it takes no expert= or init=)")
    source = seed if variant.builds_on_seed is None else variant.builds_on_seed
    return [f"{key}={logdir / env / variant.builds_on / f'seed{source}'}"]


def _excluded(suite: Suite, agent: str, env: str) -> bool:
    """Whether the suite excludes the pair under any of their names (base or label)."""
    return any(f"{a}/{e}" in suite.exclude for a in _names(suite, agent) for e in _names(suite, env))


def _evaluate_only(suite: Suite, label: str) -> bool:
    return label in suite.variants and suite.variants[label].evaluate_only


def _training_jobs(suite: Suite, opts: Options, logdir: Path, agent: str, env: str, seeds: list[int]) -> list[Job]:
    from rlgen.compose import load_config

    if _excluded(suite, agent, env):
        return []
    agents, envs = _names(suite, agent), _names(suite, env)
    made = [o for label in (env, agent) if label in suite.variants for o in suite.variants[label].overrides]
    extra = [*made, *(o for group in _lookup(suite.overrides, agents, envs) for o in group)]
    selection = [f"agent={base(suite, agent)}", f"env={base(suite, env)}"]
    config = load_config([*selection, *extra])
    budget = next(iter(reversed(_lookup(suite.steps, agents, envs))), config.total_steps)
    sweep = _lookup(suite.step_sweep, agents, envs)
    budgets = sweep[-1] if sweep else [budget]
    jobs = []
    for steps in sorted({max(1, int(b * opts.budget_scale)) for b in budgets}):
        every = int(config.eval_every * opts.budget_scale) if config.eval_every else 0
        every = max(1, steps // opts.evals) if opts.evals else every
        episodes = [f"eval_episodes={opts.eval_episodes}"] if opts.eval_episodes else []
        for seed in seeds:
            name = f"seed{seed}" if not sweep else f"steps{steps}-seed{seed}"
            run_dir = logdir / env / agent / name
            builds_on = _foundation(suite, logdir, agent, env, seed)
            overrides = [*selection, *extra, f"seed={seed}", f"total_steps={steps}", f"eval_every={every}",
                         *episodes, "progress=false", *builds_on]
            after = builds_on[0].partition("=")[2] if builds_on else ""
            jobs.append(Job(agent, env, seed, steps, str(run_dir), overrides, after=after))
    return jobs


def _evaluation_jobs(suite: Suite, logdir: Path, agent: str, env: str, planned: list[Job]) -> list[Job]:
    """One job per training run of the variant's base agent on `env`: that run's model, evaluated with
    the variant's overrides (applied last, so they win)."""
    variant = suite.variants[agent]
    sources = [j for j in planned if j.agent == variant.agent and j.env == env]
    if not sources and not _excluded(suite, agent, env):
        raise UserError(f"{agent} evaluates the runs of {variant.agent}, which this plan does not train on {env}; "
                        f"add {variant.agent} to agents=")
    if sources:  # a mistaken override is refused now, not after the training runs
        from rlgen.compose import load_config

        try:
            load_config([*sources[0].overrides, *variant.overrides])
        except UserError as err:
            raise UserError(f"variant {agent}: {err}") from None
    return [Job(agent, env, j.seed, j.budget, str(logdir / env / agent / Path(j.run_dir).name),
                [*j.overrides, *variant.overrides], source=j.run_dir) for j in sources]
