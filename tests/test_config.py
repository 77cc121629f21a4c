"""Typed configuration: composition, tuned values, overrides, sweeps and the errors users see."""

from __future__ import annotations

from dataclasses import fields, replace

import pytest
from conftest import assert_user_error, eval_steps, train_run, tuned_file

from rlgen.agents import AGENTS, config_class
from rlgen.compose import expand_overrides, from_yaml, list_choices, load_config, to_yaml, tuned_pairs
from rlgen.errors import UserError, did_you_mean


def test_tuned_values_apply_to_their_agent_and_env_pair_only():
    written, defaults = tuned_file("ppo", "CartPole"), config_class("ppo")()
    assert [k for k, v in written["agent"].items() if getattr(defaults, k) != v], "nothing tuned: nothing to test"
    tuned = load_config(["agent=ppo", "env=CartPole"])
    plain = load_config(["agent=ppo", "env=CartPole-v0"])  # an id without a short name has no tuned file
    assert plain.env.id == "CartPole-v0" and plain.agent == defaults
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
    cfg = load_config(["env=MountainCarContinuous-v0"])
    assert (cfg.env.id, cfg.env.name) == ("MountainCarContinuous-v0", "MountainCarContinuous-v0")


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


def short_names_and_ids() -> list[tuple[str, str]]:
    """(short name, Gymnasium id) of every conf/env node but the generic one."""
    from pathlib import Path

    import yaml

    import rlgen

    nodes = [yaml.safe_load(p.read_text()) for p in (Path(rlgen.__file__).parent / "conf" / "env").glob("*.yaml")]
    return sorted((n["name"], n["id"]) for n in nodes if n["name"] != "???")


def test_a_short_name_and_its_gymnasium_id_are_one_env():
    """Every form that names the env composes the same config: tuned values, budget and run folder."""
    pairs = short_names_and_ids()
    assert ("CartPole", "CartPole-v1") in pairs and len(pairs) >= 20
    tuned = {env: agent for agent, env, _ in tuned_pairs()}
    for name, env_id in pairs:
        agent = f"agent={tuned.get(name, 'ppo')}"
        short = load_config([agent, f"env={name}"])
        for form in (f"env={env_id}", f"env.id={env_id}", f"env=rlgen.envs:{env_id}"):
            assert load_config([agent, form]) == short, (name, form)


def test_cartpole_by_its_id_trains_into_the_cartpole_folder_with_its_tuned_rollout(tmp_path, main_in_process):
    written = tuned_file("ppo", "CartPole")["agent"]
    rollout = written["n_envs"] * written["n_steps"]
    out = main_in_process("agent=ppo", "env=CartPole-v1", f"total_steps={rollout}", "eval_episodes=1",
                          f"runs_root={tmp_path}", "progress=false")
    assert out.returncode == 0, out.stderr
    (run,) = tmp_path.glob("CartPole/ppo/*")
    assert eval_steps(run) == [rollout]
    assert from_yaml((run / "config.yaml").read_text()) == replace(
        load_config(["agent=ppo", "env=CartPole", f"total_steps={rollout}", "eval_episodes=1",
                     f"runs_root={tmp_path}", "progress=false"]), run_dir=None)


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["hydra.run.dir=out"], ["hydra.run.dir", "no effect", "run_dir=PATH"]),
        (["hydra.job.chdir=true"], ["hydra.job.chdir", "no effect"]),
        (["hydra/launcher=joblib"], ["hydra/launcher", "no effect", "-m"]),
        (["-m", "seed=interval(0,1)"], ["interval()", "range(start,stop"]),
        (["-m", "agent=glob(zz*)"], ["sweep 'agent=glob(zz*)' has no values"]),
        (["-m", "seed=range(3,0)"], ["sweep 'seed=range(3,0)' has no values"]),
        (["-m", "eval_episodes=glob(*)"], ["glob()", "agents or envs", "eval_episodes"]),
        (["+foo=1"], ["unknown setting 'foo'"]),
        (["foo.bar=1"], ["unknown setting 'foo'"]),
        (["+agent.gama=0.9"], ["no field 'gama'", "'gamma'"]),
        (["~seed"], ["'~seed' would delete a setting", "seed=VALUE"]),
        (["~agent.gamma=0.9"], ["delete a setting", "agent.gamma=VALUE"]),
        (["agent.gamma=0.9", "agent.gamma=0.5"], ["'agent.gamma' is given twice", "give it once"]),
        (["env=CartPole", "env.id=Acrobot-v1"], ["'env' is given twice"]),
        (["env=gym"], ["unknown env 'gym'", "module:Id"]),
        (["env=Cartpole-v1"], ["unknown env 'Cartpole-v1'", "'CartPole-v1'"]),
        (["--cfgg"], ["unknown option --cfgg", "'--cfg'"]),
        (["--cfg", "hydra"], ["no Hydra config"]),
        (["-m", "seed=range(0,3,0)"], ["range(0,3,0)", "must not be zero", "range(start,stop"]),
        (["-m", "seed=range(0,100000000)"], ["more than 1000 jobs", "rlgen.bench"]),
        (["-m", "seed=range(0,100)", "agent=glob(*)"], ["more than 1000 jobs"]),
        (["-m", "seed=choice()"], ["cannot parse", "choice(a,b)"]),
        (["env.vectorization=asyn"], ["env.vectorization='asyn'", "'async'"]),
        (["agent=ppp", "--help"], ["unknown agent 'ppp'"]),
    ],
)
def test_composition_mistakes_are_one_line_and_start_nothing(args, fragments, tmp_path, monkeypatch,
                                                             main_in_process):
    monkeypatch.chdir(tmp_path)  # the default runs_root is ./runs
    assert_user_error(main_in_process(*args, "total_steps=64", "progress=false"), *fragments)
    assert list(tmp_path.iterdir()) == []


def test_hydras_cfg_job_and_all_are_cfg(main_in_process):
    assert main_in_process("--cfg", "job", "seed=3").stdout == main_in_process("seed=3", "--cfg", "all").stdout
    assert "seed: 3" in main_in_process("--cfg", "seed=3").stdout


def test_plus_forms_set_an_existing_setting_and_env_kwargs():
    cfg = load_config(["++seed=3", "+agent.gamma=0.5", "env=Maze", "+env.kwargs.size=5"])
    assert (cfg.seed, cfg.agent.gamma, cfg.env.kwargs["size"]) == (3, 0.5, 5)


def test_sweep_forms_rlgen_runs():
    agents, envs = list_choices()
    jobs = expand_overrides(["agent=glob(sb3_*)", "seed=range(0,3)", "env=choice(CartPole,Acrobot-v1)"], True)
    assert sorted({j[0] for j in jobs}) == sorted(f"agent={a}" for a in agents if a.startswith("sb3_"))
    n_sb3 = sum(a.startswith("sb3_") for a in agents)
    assert {j[1] for j in jobs} == {"seed=0", "seed=1", "seed=2"} and len(jobs) == n_sb3 * 3 * 2
    assert expand_overrides(["env=glob(Windy*,exclude=*Stochastic)"], True) == [
        [f"env={e}"] for e in envs if e.startswith("Windy") and not e.endswith("Stochastic")]


def test_help_points_to_the_agents_config_and_lists_tuned_pairs(main_in_process):
    text = main_in_process("--help").stdout
    assert "conf/agent" not in text and "Config dataclass" in text and "--tuned" in text
    from rlgen.config import TrainConfig

    assert all(f"  {f.name}=" in text for f in fields(TrainConfig) if f.name not in ("agent", "env"))
    listed = main_in_process("--tuned").stdout
    for agent, env, _ in tuned_pairs():
        assert f"agent={agent} env={env} " in listed


def test_agent_help_lists_every_field_with_the_value_the_run_would_use(main_in_process):
    """Each line of `agent=NAME --help` is an override: given back, they compose the same config."""
    from rlgen.cli import field_docs

    out = main_in_process("agent=ppo", "env=CartPole-v1", "agent.gamma=0.5", "--help")
    assert out.returncode == 0 and "PPOConfig in rlgen/agents/ppo.py" in out.stdout
    listed = [line.split()[0] for line in out.stdout.splitlines() if line.startswith("  agent.")]
    cfg = load_config(["agent=ppo", "env=CartPole", "agent.gamma=0.5"])
    assert len(listed) == len(fields(cfg.agent)) - 1  # every field but the name
    assert load_config(["agent=ppo", "env=CartPole", *listed]) == cfg
    assert "agent.n_steps=32" in listed and "agent.gamma=0.5" in listed  # tuned, and overridden
    assert field_docs(type(cfg.agent))[1]["n_steps"] in out.stdout
    for agent in AGENTS:  # nested configs (rlhf's agent.kl.kl_coef), lists, nulls and booleans too
        listed = [line.split()[0] for line in main_in_process(f"agent={agent}", "--help").stdout.splitlines()
                  if line.startswith("  agent.")]
        assert load_config([f"agent={agent}", *listed]) == load_config([f"agent={agent}"]), agent


def test_each_agent_yaml_names_the_config_class_that_holds_its_hyperparameters():
    from pathlib import Path

    import rlgen

    for path in (Path(rlgen.__file__).parent / "conf" / "agent").glob("*.yaml"):
        schema = config_class(path.stem)
        assert f"fields of {schema.__name__} in rlgen/agents/{schema.__module__.split('.')[-1]}.py" in \
            path.read_text(), path.name


def test_env_keywords_near_a_field_name_are_keywords_and_misspelt_fields_are_errors():
    assert load_config(["env=Maze", "env.kind=wide"]).env.kwargs["kind"] == "wide"  # `kind` is not `id`
    for typo, field in (("idd", "id"), ("nmae", "name"), ("vectorisation", "vectorization"), ("kwarg", "kwargs")):
        with pytest.raises(UserError, match=f"no field '{typo}' \\(did you mean '{field}'"):
            load_config([f"env.{typo}=x"])


def test_a_composing_caller_may_set_a_setting_again_and_the_last_value_wins():
    """A benchmark suite lists its overrides for all runs, then per agent and env; the command line
    gives each setting once (tested above)."""
    cfg = load_config(["env=CartPole", "eval_every=5", "agent=dqn", "eval_every=0", "env=Acrobot-v1", "agent=ppo"])
    assert (cfg.env.name, cfg.eval_every, cfg.agent.name) == ("Acrobot", 0, "ppo")
    assert cfg == load_config(["agent=ppo", "env=Acrobot", "eval_every=0"])
