"""A wrong value is one line and exit status 2 before anything is made, never a traceback and never a
run that trains silently wrong: every agent's hyperparameters by kind (discounts, learning rates,
probabilities, counts, layer widths), seeds and threads, spaces an agent cannot learn on, network
shapes and gridworld rewards."""

from __future__ import annotations

import hashlib
import re
import subprocess
import typing
from dataclasses import fields, is_dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from conftest import assert_user_error
from omegaconf import OmegaConf

import rlgen
from rlgen.agents import AGENTS, agent_class, config_class
from rlgen.compose import load_config
from rlgen.envs.gridworld import GridWorldEnv, LayoutError, MazeEnv
from rlgen.errors import UserError
from rlgen.nets.gpt import GPTConfig

# What each kind of field must reject, matched against "<agent>.<field path>"; the first pattern that
# matches classifies the field. Every numeric field of every agent's Config must match one (see
# test_every_numeric_field_is_classified), so a new hyperparameter is classified when it is added.
INVALID: list[tuple[str, list[str]]] = [
    (r"\.gamma$", ["-0.01", "1.01", "1e300"]),  # discount factors
    (r"learning_rate$", ["0", "-3e-4", "1e300"]),  # step sizes of Adam, RMSprop, SGD: float32 holds them
    # tabular step sizes: the gradient bandit's may exceed 1 (S&B Figure 2.6); Monte Carlo's and the
    # value bandits' 0 means sample averages; TD's are in (0, 1]
    (r"^gradient_bandit\.alpha$", ["0", "-0.1"]),
    (r"^(mc_\w+|epsilon_greedy|ucb)\.alpha$", ["-0.1", "1.5"]),
    (r"\.alpha$", ["0", "-0.1", "1.5"]),
    (r"\.(epsilon|epsilon_final|exploration_\w+|target_entropy_ratio|gae_lambda|p_not|p_intensifier)$",
     ["-0.01", "1.01"]),  # probabilities and fractions
    (r"\.(clip_range|tau)$", ["0", "-0.1", "1.5"]),
    (r"^(sql|soft_\w+)\.ent_coef$", ["0", "-0.1"]),  # temperatures divide Q
    (r"\.(ent_coef|vf_coef|kl_coef|rationality|c|tol)$", ["-0.1"]),
    (r"\.(max_grad_norm|clip_range_vf|target_kl|kl_target|rms_prop_eps)$", ["0", "-1"]),
    (r"\.(clip_obs|clip_reward|norm_epsilon)$", ["0", "-1"]),  # normalisation's clipping bounds, its epsilon
    (r"\.step_power$", ["-0.5", "1.5"]),
    (r"\.(n_envs|n_steps|batch_size|minibatch_size|n_epochs|epochs|buffer_size|train_freq|target_update_interval"
     r"|n_layer|n_head|n_embd|n_reviews|steps|n_pairs|n_eval_pairs|kl_horizon|n_eval_prompts|bon_\w+|n"
     r"|n_trajectories|n_components)$",
     ["0", "-1"]),
    (r"\.(learning_starts|epsilon_decay_steps)$", ["-1"]),
    (r"^ibc\.(n_counter_examples|dfo_samples|dfo_iters|langevin_samples|langevin_counter_examples|langevin_steps)$",
     ["0", "-1"]),
    (r"^ibc\.(langevin_step_size|langevin_delta_clip)$", ["0", "-0.1"]),
    (r"^ibc\.(dfo_noise|langevin_step_size_final|langevin_noise|grad_penalty|grad_margin)$", ["-0.1"]),
    (r"^ibc\.dfo_shrink$", ["0", "-0.5", "1.5"]),
    (r"^ibc\.dfo_counter_examples$", ["-1", "33"]),  # 0 .. n_counter_examples (32)
    (r"\.gradient_steps$", ["0", "-2"]),
    (r"\.max_clauses$", ["0", "10000"]),
    (r"\.(seed|demo_seed)$", ["-1", "4294967296"]),
    (r"\.(net_arch|disc_net_arch)$", ["[0]", "[64,-1]"]),
    (r"^gail\.(disc_updates|disc_batch_size)$", ["0", "-1"]),
    (r"^gail\.grad_penalty$", ["-0.1"]),
    (r"^diffusion\.(diffusion_steps|horizon)$", ["0", "-1"]),
    (r"^diffusion\.sampling_steps$", ["0", "101"]),  # DDIM's levels: 1 .. diffusion_steps (100)
    (r"^diffusion\.execute$", ["0", "2"]),  # 1 .. horizon (1)
    (r"^diffusion\.eta$", ["-0.1"]),
    (r"^dppo\.(ft_denoising_steps|min_sampling_std|min_logprob_std)$", ["0", "-1"]),
    (r"^dppo\.gamma_denoising$", ["-0.01", "1.01"]),  # a discount over the denoising steps
    (r"^dppo\.(eta|critic_warmup)$", ["-1"]),
    (r"^dppo\.critic_net_arch$", ["[0]", "[64,-1]"]),
    (r"\.ema_power$", ["-0.1"]),
    (r"\.ema_max_decay$", ["-0.1", "1"]),
    (r"\.(initial_value|log_std_init)$", []),  # any number
    # language-model alignment: DPO's, IPO's and KTO's beta scales (IPO: inverts) the log-ratio; GRPO's and
    # RLOO's weighs a KL penalty that 0 leaves out
    (r"^(dpo|ipo|kto)\.beta$", ["0", "-0.1"]),
    (r"^(grpo|rloo)\.beta$", ["-0.1"]),
    (r"\.(desirable_weight|undesirable_weight)$", ["0", "-0.1"]),
    (r"\.monitor_samples$", ["0", "-1"]),
    (r"\.monitor_every$", ["-1"]),
    (r"\.group_size$", ["1", "0", "-1"]),  # a completion is judged against at least one other
    (r"\.sde_sample_freq$", ["0", "-2"]),  # -1: once per rollout, else a positive number of steps
]
NON_FINITE = ["nan", "inf", "-inf"]  # no float field takes them

# Values at the edge of each range stay valid: the checks must not refuse what the algorithms allow.
VALID: list[tuple[str, list[str]]] = [
    (r"\.gamma$", ["0", "1"]),
    (r"learning_rate$", ["1", "1e-8", "1e30"]),  # 1e30 diverges, and test_run.py sees the run stop
    (r"^gradient_bandit\.alpha$", ["3"]),
    (r"^(mc_\w+|epsilon_greedy|ucb)\.alpha$", ["0", "1"]),
    (r"^reinforce\.gae_lambda$", ["1"]),  # whole episodes' returns: lambda = 1 only
    (r"\.(epsilon|epsilon_final|exploration_\w+|gae_lambda|p_not)$", ["0", "1"]),
    (r"\.(clip_range|tau)$", ["1"]),
    (r"^(ppo|a2c|reinforce|sb3_\w+)\.(ent_coef|vf_coef)$|\.tol$", ["0"]),
    (r"\.net_arch$", ["[]", "[1]"]),
    (r"\.(learning_starts|epsilon_decay_steps)$", ["0"]),
    (r"\.gradient_steps$", ["-1"]),
    (r"\.seed$", ["0", "2147483647"]),
    (r"^diffusion\.sampling_steps$", ["1", "100"]),
    (r"^diffusion\.eta$", ["0", "1", "2"]),
    (r"^dppo\.(eta|critic_warmup)$", ["0"]),
    (r"\.ema_power$", ["0"]),
    (r"\.ema_max_decay$", ["0", "0.99999"]),
    (r"^(grpo|rloo)\.beta$", ["0"]),
    (r"^(dpo|ipo|kto)\.beta$", ["1e-6", "100"]),
    (r"\.monitor_every$", ["0"]),
    (r"\.group_size$", ["2", "64"]),  # divides the default batch of 64
    (r"\.sde_sample_freq$", ["-1", "1"]),
]


def numeric_fields(cls: type, prefix: str = "") -> list[tuple[str, type]]:
    """(path, type) of every int, float (or optional float) and list-of-int field, nested configs included."""
    out = []
    for f in fields(cls):
        hint = typing.get_type_hints(cls)[f.name]
        if is_dataclass(hint):
            out += numeric_fields(hint, f"{prefix}{f.name}.")
            continue
        kinds = set(typing.get_args(hint) or (hint,)) - {type(None)}  # float | None: float; list[int]: int
        if kinds <= {int, float}:
            out.append((f"{prefix}{f.name}", float if float in kinds else int))
    return out


def classify(table: list[tuple[str, list[str]]], agent: str, path: str) -> list[str] | None:
    return next((values for pattern, values in table if re.search(pattern, f"{agent}.{path}")), None)


def invalid_cases() -> list[tuple[str, str, list[str]]]:
    cases = []
    for agent in AGENTS:
        for path, kind in numeric_fields(config_class(agent)):
            values = (classify(INVALID, agent, path) or []) + (NON_FINITE if kind is float else [])
            cases.append((agent, path, values))
    return cases


def typed(agent: str, path: str, value: str):
    """The agent's Config with one field set from its command-line text, built the way load_config
    builds it (OmegaConf's typed merge, then the dataclass and its __post_init__), without Hydra."""
    node = OmegaConf.merge(OmegaConf.structured(config_class(agent)), OmegaConf.from_dotlist([f"{path}={value}"]))
    return OmegaConf.to_object(node)


def test_every_numeric_field_is_classified():
    """A new hyperparameter gets its range decided, and a test, when it is added."""
    missing = [f"{a}.{p}" for a in AGENTS for p, _ in numeric_fields(config_class(a))
               if classify(INVALID, a, p) is None]
    assert not missing, f"add these to INVALID (and to the Config's __post_init__ checks): {missing}"


@pytest.mark.parametrize(("agent", "path", "values"), invalid_cases(), ids=lambda x: x if isinstance(x, str) else "")
def test_out_of_range_values_are_user_errors_naming_the_field(agent, path, values):
    """Through load_config (the command line's path) for the first value, and the same typed build for
    every value of the field's kind."""
    assert values, f"{agent}.{path}: nothing is invalid for it?"
    with pytest.raises(UserError) as err:
        load_config([f"agent={agent}", f"agent.{path}={values[0]}"])
    assert f"agent.{path}" in str(err.value), str(err.value)
    for value in values:
        with pytest.raises(UserError) as err:
            typed(agent, path, value)
        assert f"agent.{path}" in str(err.value) and "\n" not in str(err.value), (value, str(err.value))


@pytest.mark.parametrize("agent", list(AGENTS))
def test_defaults_and_edge_values_are_accepted(agent):
    assert load_config([f"agent={agent}"]).agent.name == agent
    for path, _ in numeric_fields(config_class(agent)):
        for value in classify(VALID, agent, path) or []:
            typed(agent, path, value)


def test_network_shapes():
    with pytest.raises(UserError, match=r"n_embd=65 is not divisible by n_head=4 .* try n_embd=64 or 68"):
        GPTConfig(n_head=4, n_embd=65)
    for bad in (dict(n_layer=0), dict(vocab_size=0), dict(dropout=1.0), dict(dropout=-0.1)):
        with pytest.raises(UserError, match=next(iter(bad))):
            GPTConfig(**bad)
    with pytest.raises(UserError, match="agent.n_embd=30 is not divisible by agent.n_head=4"):
        load_config(["agent=rlhf", "agent.n_embd=30"])
    with pytest.raises(UserError, match="agent.kl.kl_horizon=10 must exceed 0.2 x agent.ppo.batch_size"):
        load_config(["agent=rlhf", "agent.kl.kl_horizon=10"])
    load_config(["agent=rlhf", "agent.kl.kl_horizon=10", "agent.kl.adaptive=false"])
    with pytest.raises(UserError, match="agent.kl.kl_coef=0 stays 0 under the adaptive controller"):
        load_config(["agent=rlhf", "agent.kl.kl_coef=0"])
    with pytest.raises(UserError, match="agent.normalize_advantage needs minibatches of 2"):
        load_config(["agent=ppo", "agent.batch_size=1"])
    load_config(["agent=ppo", "agent.batch_size=1", "agent.normalize_advantage=false"])


BOX = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
ONE_HOT = gym.spaces.Box(0.0, 1.0, (16,), np.float32)


@pytest.mark.parametrize(
    ("agent", "obs", "actions", "fragments"),
    [
        ("dqn", BOX, BOX, ["dqn needs Discrete actions; this env's are Box; use ppo, sb3_ppo, sb3_a2c, a2c or "
                           "reinforce; from an expert, not rewards (a run given as expert= or init=, or the scripted "
                           "expert of Particle, Avoid, Step): bc, mdn, ibc, diffusion, gail, dppo"]),
        ("sb3_dqn", BOX, gym.spaces.MultiBinary(4), ["sb3_dqn needs Discrete actions", "use sb3_ppo or sb3_a2c"]),
        ("ppo", BOX, gym.spaces.MultiDiscrete([2, 3]), ["ppo needs Discrete or Box actions", "use sb3_ppo or sb3_a2c"]),
        ("sb3_ppo", BOX, gym.spaces.Tuple([gym.spaces.Discrete(2)] * 2),
         ["needs Discrete, Box, MultiDiscrete or MultiBinary actions; this env's are Tuple",
          "no rlgen agent handles these spaces"]),
        ("ppo", gym.spaces.Dict({"x": BOX}), gym.spaces.Discrete(2), ["observations; this env's are Dict"]),
        ("q_learning", BOX, gym.spaces.Discrete(2), ["q_learning is tabular", "use ppo, dqn, sb3_ppo"]),
        ("value_iteration", gym.spaces.Discrete(4), BOX, ["needs Discrete actions",
                                                           "use ppo, sb3_ppo, sb3_a2c, a2c or reinforce"]),
        ("ucb", gym.spaces.Discrete(16), gym.spaces.Discrete(4), ["needs a bandit env", "Discrete(16)"]),
        ("rlhf", ONE_HOT, gym.spaces.Discrete(2), ["rlhf needs env=TextPreference", "use ppo, dqn"]),
    ],
)
def test_an_agent_on_spaces_it_cannot_learn_names_the_agents_that_can(agent, obs, actions, fragments):
    with pytest.raises(UserError) as err:
        agent_class(agent)(obs, actions, config_class(agent)(), 0)
    for fragment in fragments:
        assert fragment in str(err.value), str(err.value)


GRID = ["S..", ".#.", "..G"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(rewards={"X": 1.0}), "rewards names 'X', which no cell of this layout is"),
        (dict(rewards={"T": -1.0}), "rewards names 'T'"),  # a trap the map does not have
        (dict(rewards={"#": -1.0}), "rewards names '#'"),  # walls are never entered
        (dict(rewards={"G": "abc"}), "rewards['G'] must be a number"),
        (dict(rewards={1: 1.0}), "rewards maps cell characters"),
        (dict(rewards=5), "rewards maps cell characters"),
        (dict(step_reward="abc"), "step_reward must be a number"),
        (dict(step_reward=float("nan")), "step_reward must be a number"),
        (dict(slip="x"), "slip must be a probability"),
        (dict(wind=[0, 0.5, 1]), "wind must be whole cells"),
        (dict(layout=5), "a gridworld layout is text"),
        (dict(layout=["S.G", 3]), "a gridworld layout is text"),
    ],
)
def test_gridworld_values_that_would_be_ignored_or_crash(kwargs, message):
    with pytest.raises(LayoutError, match=re.escape(message)):
        GridWorldEnv(**{"layout": GRID, **kwargs})


def test_gridworld_values_that_are_fine():
    env = GridWorldEnv(GRID, rewards={"G": 1.0, "S": 0.5, ".": -2}, step_reward=0, wind=[0, 1.0, 0])
    assert env.model.rewards.max() == 1.0
    for bad in (dict(size="abc"), dict(maze_seed=-1), dict(size=True)):
        with pytest.raises(LayoutError, match=next(iter(bad))):
            MazeEnv(**bad)
    assert MazeEnv(size=np.int64(7), maze_seed=np.int64(1)).observation_space.n == 49


def test_sizes_beyond_any_memory():
    """Far beyond any machine (petabytes), so the allocation fails at once instead of swapping."""
    with pytest.raises(LayoutError, match="a maze of size 10000000 .* does not fit in memory"):
        MazeEnv(size=10**7)
    with pytest.raises(UserError, match="agent.buffer_size=10000000000000: .* does not fit in memory"):
        agent_class("dqn")(BOX, gym.spaces.Discrete(2), config_class("dqn")(buffer_size=10**13), 0)


# -- from the command line: one line, exit 2, nothing created or changed --------------------------------

def committed_state() -> str:
    """The repository's tracked and untracked files as git sees them (empty outside a git checkout)."""
    root = Path(rlgen.__file__).parent.parent
    out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=root,
                         capture_output=True, text=True, check=False)
    diff = subprocess.run(["git", "diff"], cwd=root, capture_output=True, text=True, check=False)
    return out.stdout + hashlib.sha256(diff.stdout.encode()).hexdigest()


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["seed=-1"], ["seed must be in [0, 2147483647]", "got -1"]),
        (["agent=sb3_ppo", "seed=4294967296"], ["seed must be in [0, 2147483647]"]),
        (["torch_threads=0"], ["torch_threads must be positive, got 0"]),
        (["torch_threads=-2"], ["torch_threads must be positive, got -2"]),
        (["agent=rlhf", "env=TextPreference", "agent.n_embd=65"], ["agent.n_embd=65 is not divisible", "64 or 68"]),
        (["agent=rlhf", "env=TextPreference", "agent.n_head=0"], ["agent.n_head must be positive"]),
        (["agent=ppo", "agent.net_arch=[64,0]"], ["agent.net_arch=[64, 0]", "positive number of units"]),
        (["agent=sb3_dqn", "env=Pendulum"], ["sb3_dqn needs Discrete actions", "Box",
                                                  "use ppo, sb3_ppo, sb3_a2c, a2c or reinforce"]),
        (["agent=q_learning", "env=CartPole"], ["q_learning is tabular", "Box", "use ppo, dqn"]),
        (["agent=ucb", "env=GridWorld4x4"], ["ucb needs a bandit env", "env=Bandit10"]),
        (["agent=sb3_ppo", "agent.learning_rate=1e300"], ["agent.learning_rate must be in (0, 3.40282e+38]", "1e+300"]),
        (["agent=dqn", "agent.learning_rate=-0.001"], ["agent.learning_rate must be in (0, "]),
        (["agent=rlhf", "env=TextPreference", "agent.sft.learning_rate=0"], ["agent.sft.learning_rate must be in"]),
        (["agent=ppo", "agent.gamma=1.5"], ["agent.gamma must be in [0, 1] (a discount factor)"]),
        (["agent=q_learning", "env=GridWorld4x4", "agent.gamma=-0.5"], ["agent.gamma must be in [0, 1]"]),
        (["agent=sarsa", "env=CliffWalking", "agent.epsilon=2"], ["agent.epsilon must be in [0, 1]"]),
        (["agent=ppo", "agent.gae_lambda=nan"], ["agent.gae_lambda must be a finite number"]),
        (["agent=rlhf", "env=TextPreference", "agent.ppo.clip_range=0"], ["agent.ppo.clip_range must be in (0, 1]"]),
        (["agent=q_learning", "env=GridWorld4x4", "env.rewards={X:1}"], ["rewards names 'X'", "never be paid"]),
        (["agent=q_learning", "env=RandomWalk5", "env.rewards={C:-5}"], ["rewards names 'C'"]),
        (["agent=q_learning", "env=GridWorld4x4", "env.step_reward=abc"], ["step_reward must be a number"]),
        (["agent=value_iteration", "env=Maze", "env.maze_seed=-1"], ["maze maze_seed must be a whole number >= 0"]),
        (["agent=ucb", "env=Bandit10", "env.k=0"], ["cannot make env 'rlgen/Bandit10-v0'", "at least 2 arms, got k=0"]),
        (["agent=q_learning", "env=FrozenLake-v1", "env.map_name=9x9"],
         ["cannot make env 'FrozenLake-v1'", "KeyError: '9x9'"]),
        (["agent=dpo", "env=TextPreference", "agent.beta=0"], ["agent.beta must be positive, got 0"]),
        (["agent=ipo", "env=TextPreference", "agent.beta=-1"], ["agent.beta must be positive, got -1"]),
        (["agent=kto", "env=TextPreference", "agent.beta=0"], ["agent.beta must be positive, got 0"]),
        (["agent=kto", "env=TextPreference", "agent.undesirable_weight=-1"], ["agent.undesirable_weight must be"]),
        (["agent=grpo", "env=TextPreference", "agent.group_size=1"], ["agent.group_size=1 must be at least 2"]),
        (["agent=rloo", "env=TextPreference", "agent.group_size=1"], ["agent.group_size=1 must be at least 2"]),
        (["agent=grpo", "env=TextPreference", "agent.loss=grop"],
         ["agent.loss='grop' is not one of grpo, dapo, dr_grpo", "did you mean 'grpo'"]),
        (["agent=grpo", "env=TextPreference", "agent.batch_size=60", "agent.group_size=8"],
         ["agent.batch_size=60 must be a multiple of agent.group_size=8"]),
        (["agent=grpo", "env=TextPreference", "agent.beta=-0.1"], ["agent.beta must be >= 0, got -0.1"]),
        (["agent=rloo", "env=TextPreference", "agent.beta=nan"], ["agent.beta must be a finite number"]),
        (["agent=dpo", "env=CartPole"], ["dpo needs env=TextPreference"]),
        (["agent=grpo", "env=Taxi"], ["grpo needs env=TextPreference"]),
    ],
)
def test_wrong_values_from_the_command_line(args, fragments, tmp_path, main_in_process):
    before = committed_state()
    out = main_in_process(*args, "total_steps=64", f"run_dir={tmp_path / 'run'}", "progress=false")
    assert_user_error(out, *fragments)
    assert not (tmp_path / "run").exists(), "a rejected value must not create the run directory"
    assert committed_state() == before


def test_wrong_values_on_resume_change_nothing(tmp_path, main_in_process):
    run = tmp_path / "run"
    out = main_in_process("agent=q_learning", "env=GridWorld4x4", "total_steps=50", "eval_episodes=1",
                          f"run_dir={run}", "progress=false")
    assert out.returncode == 0, out.stderr
    files = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    for bad, fragment in (("torch_threads=0", "torch_threads must be positive"),
                          ("total_steps=-1", "total_steps must be a positive number")):
        assert_user_error(main_in_process(f"resume={run}", bad, "progress=false"), fragment)
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == files


def test_wrong_seeds_of_the_other_commands(tmp_path, capsys):
    from rlgen.bandit_testbed import main as testbed
    from rlgen.evaluate import main as evaluate

    for main, args in ((evaluate, [f"run={tmp_path}", "seed=-1"]), (testbed, ["seed=-1", f"out={tmp_path}"])):
        with pytest.raises(SystemExit) as exit_:
            main(args)
        assert exit_.value.code == 2
        assert "seed must be in [0, 2147483647]" in capsys.readouterr().err
