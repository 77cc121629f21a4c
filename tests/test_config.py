"""Typed configuration: composition, tuned values, overrides, sweeps and the errors users see."""

from __future__ import annotations

from dataclasses import replace

import pytest
from conftest import eval_steps, train_run, tuned_file

from rlgen.agents import AGENTS, config_class
from rlgen.compose import expand_overrides, from_yaml, list_choices, load_config, to_yaml
from rlgen.errors import UserError, did_you_mean


def test_tuned_values_apply_to_their_agent_and_env_pair_only():
    written, defaults = tuned_file("ppo", "CartPole"), config_class("ppo")()
    assert [k for k, v in written["agent"].items() if getattr(defaults, k) != v], "nothing tuned: nothing to test"
    tuned = load_config(["agent=ppo", "env=CartPole"])
    plain = load_config(["agent=ppo", "env=Acrobot-v1"])  # a raw id has no tuned file
    assert plain.env.id == "Acrobot-v1" and plain.agent == defaults
    for key, value in written["agent"].items():
        assert getattr(tuned.agent, key) == value, key
    assert (tuned.total_steps, tuned.eval_every) == (written["total_steps"], written["eval_every"])


def test_the_agent_trains_with_its_tuned_rollout_size(tmp_path):
    """PPO updates every n_envs x n_steps transitions (8 x 32 tuned for CartPole, 8 x 128 by default):
    with an evaluation due after every update, the evaluations fall on multiples of the tuned size."""
    written = tuned_file("ppo", "CartPole")["agent"]
    rollout = written["n_envs"] * written["n_steps"]
    assert rollout != config_class("ppo")().rollout_size
    run = train_run(tmp_path / "run", "agent=ppo", "env=CartPole", f"total_steps={3 * rollout}", "eval_every=1",
                    "eval_episodes=1")
    assert eval_steps(run) == [rollout, 2 * rollout, 3 * rollout]


def test_every_tuned_file_composes_with_its_agent_and_env():
    from pathlib import Path

    import yaml

    import rlgen

    tuned = sorted((Path(rlgen.__file__).parent / "conf" / "tuned").glob("*.yaml"))
    assert len(tuned) > 20
    for path in tuned:
        agent, env = next((a, path.stem[len(a) + 1:]) for a in sorted(AGENTS, key=len, reverse=True)
                          if path.stem.startswith(a + "_"))
        cfg = load_config([f"agent={agent}", f"env={env}"])
        wanted = yaml.safe_load(path.read_text()).get("agent", {})
        for key, value in wanted.items():
            assert getattr(cfg.agent, key) == value, (path.name, key)


def test_user_overrides_beat_tuned_values_and_are_typed():
    cfg = load_config(["agent=dqn", "env=CartPole", "agent.learning_rate=0.01", "seed=7", "agent.net_arch=[8]"])
    assert cfg.agent.learning_rate == 0.01 and isinstance(cfg.agent.learning_rate, float)
    assert cfg.seed == 7 and list(cfg.agent.net_arch) == [8]
    tuned = load_config(["agent=dqn", "env=CartPole"])
    assert tuned.agent.learning_rate != 0.01 and list(tuned.agent.net_arch) != [8]
    # every value not overridden is still the tuned one
    assert replace(tuned.agent, learning_rate=0.01, net_arch=[8]) == cfg.agent


def test_any_registered_gymnasium_id_is_an_env():
    cfg = load_config(["env=MountainCar-v0"])
    assert (cfg.env.id, cfg.env.name) == ("MountainCar-v0", "MountainCar-v0")


def test_config_yaml_round_trip():
    cfg = load_config(["agent=ppo", "env=Pendulum", "seed=3", "agent.clip_range_vf=0.1"])
    again = from_yaml(to_yaml(cfg))
    assert again == cfg


def test_sweeps_expand_to_the_cartesian_product():
    jobs = expand_overrides(["agent=ppo,dqn", "seed=0,1,2", "total_steps=10"], multirun=True)
    assert len(jobs) == 6
    assert ["agent=dqn", "seed=2", "total_steps=10"] in jobs


def test_every_registered_agent_is_listed():
    agents, envs = list_choices()
    assert set(AGENTS) <= set(agents)
    assert "CartPole" in envs and "gym" not in envs


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        (["agent=ppp"], ["unknown agent 'ppp'", "'ppo'"]),
        (["env=CartPol"], ["unknown env 'CartPol'", "'CartPole'"]),
        (["agent=ppo", "agent.learnin_rate=1"], ["learnin_rate", "'learning_rate'"]),
        (["agent.learning_rate=abc"], ["learning_rate", "abc"]),
        (["sed=3"], ["'sed'", "'seed'"]),
        (["env.idd=CartPole-v1"], ["idd", "'id'"]),
        (["total_steps=0"], ["total_steps"]),
        (["total_steps=-3"], ["total_steps"]),
        (["eval_episodes=0"], ["eval_episodes"]),
        (["seed"], ["key=value"]),
    ],
)
def test_user_mistakes_are_one_line_user_errors(overrides, fragments):
    with pytest.raises(UserError) as err:
        load_config(overrides)
    message = str(err.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_a_sweep_without_multirun_is_a_user_error():
    with pytest.raises(UserError, match="-m"):
        expand_overrides(["seed=0,1"], multirun=False)


def test_did_you_mean_ignores_case_and_stays_quiet_when_nothing_is_close():
    assert "'CartPole'" in did_you_mean("cartpole", ["CartPole", "Pendulum"])
    assert did_you_mean("zzzzzz", ["CartPole", "Pendulum"]) == ""


def test_env_kwargs_as_documented_in_help():
    cfg = load_config(["env=MountainCar", "env.kwargs.goal_velocity=0.1"])
    assert cfg.env.kwargs == {"goal_velocity": 0.1}
