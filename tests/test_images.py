"""Image observations: PPO and DQN see them through SB3's NatureCNN, chosen by SB3's rule."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import assert_user_error, read_json
from stable_baselines3.common.preprocessing import is_image_space as sb3_is_image_space
from stable_baselines3.common.preprocessing import is_image_space_channels_first
from stable_baselines3.common.torch_layers import NatureCNN as SB3NatureCNN
from tabular_run import train

from rlgen.agents import agent_class
from rlgen.errors import UserError
from rlgen.evaluate import main as evaluate_main
from rlgen.nets.cnn import NatureCNN, is_channels_first, is_image_space
from rlgen.trainer import build_agent, load_run_config


class BrightOrDark(gym.Env):
    """Each step shows an all-dark or an all-bright image; the action that names it (0 dark, 1 bright)
    earns 1. Eight steps per episode, so the best return is 8 and a random policy's 4."""

    def __init__(self, shape: tuple[int, ...] = (36, 36, 3), render_mode: str | None = None):
        self.observation_space = gym.spaces.Box(0, 255, shape, np.uint8)
        self.action_space = gym.spaces.Discrete(2)
        self.render_mode = render_mode

    def _obs(self) -> np.ndarray:
        self.bright = int(self.np_random.integers(2))
        return np.full(self.observation_space.shape, 200 * self.bright, np.uint8)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        reward = float(int(action) == self.bright)
        self.t += 1
        return self._obs(), reward, False, self.t >= 8, {}


ENV_IDS = {"channels_last": ("BrightOrDark-v0", (36, 36, 3)), "channels_first": ("BrightOrDarkCHW-v0", (1, 40, 36)),
           "too_small": ("BrightOrDarkTiny-v0", (35, 40, 3))}
for env_id, shape in ENV_IDS.values():
    if env_id not in gym.registry:
        gym.register(env_id, entry_point=BrightOrDark, kwargs={"shape": shape})


@pytest.mark.parametrize("shape", [(36, 36, 3), (84, 84, 4), (1, 40, 36), (4, 84, 84), (64, 48, 1)])
def test_nature_cnn_is_sb3s_network(shape):
    """SB3's NatureCNN (built on the channel-first space, as VecTransposeImage gives it) loads into ours
    strictly, so every layer has SB3's shape; on the same pixels both give the same 512 features."""
    space = gym.spaces.Box(0, 255, shape, np.uint8)
    chw = shape if is_channels_first(shape) else (shape[2], shape[0], shape[1])
    torch.manual_seed(0)
    theirs = SB3NatureCNN(gym.spaces.Box(0, 255, chw, np.uint8))
    ours = NatureCNN(shape)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    convs = [(m.out_channels, m.kernel_size, m.stride) for m in ours.cnn if isinstance(m, torch.nn.Conv2d)]
    assert convs == [(32, (8, 8), (4, 4)), (64, (4, 4), (2, 2)), (64, (3, 3), (1, 1))]
    images = np.stack([space.sample() for _ in range(5)])
    chw_images = images if is_channels_first(shape) else images.transpose(0, 3, 1, 2)
    expected = theirs(torch.as_tensor(chw_images).float() / 255.0)  # SB3's preprocess_obs
    flat_rows = torch.as_tensor(images.reshape(5, -1), dtype=torch.float32)  # what the training loops pass
    for x in (flat_rows, torch.as_tensor(images)):
        out = ours(x)
        assert out.shape == (5, 512)
        torch.testing.assert_close(out, expected)


@pytest.mark.parametrize(
    "space",
    [
        gym.spaces.Box(0, 255, (36, 36, 3), np.uint8),
        gym.spaces.Box(0, 255, (3, 36, 36), np.uint8),
        gym.spaces.Box(0, 255, (36, 3, 36), np.uint8),
        gym.spaces.Box(0, 1, (36, 36, 3), np.float32),  # not uint8: SB3 does not call it an image
        gym.spaces.Box(0, 254, (36, 36, 3), np.uint8),  # bounds other than 0..255
        gym.spaces.Box(0, 255, (36, 36), np.uint8),  # two axes
        gym.spaces.Box(-1.0, 1.0, (4,), np.float32),
        gym.spaces.Discrete(3),
    ],
)
def test_image_rule_is_sb3s(space):
    assert is_image_space(space) == sb3_is_image_space(space)
    if is_image_space(space):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SB3 warns when the middle axis is the smallest
            assert is_channels_first(space.shape) == is_image_space_channels_first(space)


def _modules(agent) -> list[torch.nn.Module]:
    nets = [v for v in vars(agent).values() if isinstance(v, torch.nn.Module)]
    return [m for net in nets for m in net.modules()]


@pytest.mark.parametrize("agent", ["ppo", "dqn", "sql"])
def test_deep_agents_pick_the_cnn_for_images_only(agent):
    cls = agent_class(agent)
    image = gym.spaces.Box(0, 255, (36, 36, 3), np.uint8)
    vector = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
    with_cnn = cls(image, gym.spaces.Discrete(2), cls.Config(name=agent), 0)
    without = cls(vector, gym.spaces.Discrete(2), cls.Config(name=agent), 0)
    assert any(isinstance(m, NatureCNN) for m in _modules(with_cnn))
    assert not any(isinstance(m, torch.nn.Conv2d) for m in _modules(without))
    obs = np.stack([image.sample() for _ in range(3)])
    assert with_cnn.act(obs).shape == (3,)  # acting goes through torch, the MLP's NumPy copy cannot convolve


FAST_PPO = {"n_envs": 4, "n_steps": 64, "batch_size": 64, "n_epochs": 4, "learning_rate": 1e-3}
FAST_DQN = {"learning_starts": 200, "buffer_size": 2000, "train_freq": 4, "target_update_interval": 100,
            "learning_rate": 1e-3, "exploration_fraction": 0.3}


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["channels_last", "channels_first"])
@pytest.mark.parametrize(("agent", "steps", "config"), [("ppo", 3072, FAST_PPO), ("dqn", 1200, FAST_DQN)])
def test_agents_learn_from_pixels(agent, steps, config, layout):
    """The greedy policy tells a bright image from a dark one (random play scores 4 of 8 per episode)."""
    env_id, shape = ENV_IDS[layout]
    trained, run = train(agent, env_id, steps, **config)
    images = np.stack([np.full(shape, 0, np.uint8), np.full(shape, 200, np.uint8)])
    np.testing.assert_array_equal(trained.act(images), [0, 1])
    assert np.mean(run.returns[-10:]) > np.mean(run.returns[:10])
    if agent == "dqn":
        assert trained.buffer.obs.dtype == np.uint8  # pixels stored as they are, not as 4-byte floats


@pytest.mark.parametrize("agent", ["sb3_ppo", "sb3_dqn"])
def test_sb3_adapters_use_cnn_policy_on_images(agent):
    cls = agent_class(agent)
    space = gym.spaces.Box(0, 255, (36, 36, 3), np.uint8)
    sb3 = cls(space, gym.spaces.Discrete(2), cls.Config(name=agent), 0)
    assert any(isinstance(m, SB3NatureCNN) for m in sb3.model.policy.modules())


def test_too_small_images_are_one_line(tmp_path, main_in_process):
    """NatureCNN's convolutions need 36x36 pixels; a smaller image is the user's to fix, before any
    run directory exists."""
    with pytest.raises(UserError, match="at least 36x36"):
        NatureCNN((35, 40, 3))
    for agent in ("ppo", "dqn"):
        run_dir = tmp_path / agent
        out = main_in_process(f"agent={agent}", f"env={ENV_IDS['too_small'][0]}", f"run_dir={run_dir}",
                              "progress=false")
        assert_user_error(out, "35x40", "at least 36x36")
        assert not run_dir.exists()


@pytest.mark.parametrize("agent", ["ppo", "dqn"])
def test_image_run_checkpoints_resumes_and_evaluates(tmp_path, main_in_process, agent):
    """A whole run on pixels: the encoder's trained weights are in the checkpoint, a resumed run goes
    on to its new budget, and rlgen.evaluate plays the checkpoint."""
    run_dir = tmp_path / "run"
    settings = {"ppo": ("agent.n_envs=2", "agent.n_steps=32", "agent.n_epochs=1"),
                "dqn": ("agent.learning_starts=32", "agent.buffer_size=512")}[agent]
    out = main_in_process(f"agent={agent}", f"env={ENV_IDS['channels_last'][0]}", *settings, "total_steps=128",
                          "eval_every=128", "eval_episodes=2", "progress=false", f"run_dir={run_dir}")
    assert out.returncode == 0, out.stderr
    assert main_in_process(f"resume={run_dir}", "total_steps=256").returncode == 0
    assert read_json(run_dir / "summary.json")["total_steps"] == 256
    cfg = load_run_config(run_dir)
    fresh, loaded = build_agent(cfg), build_agent(cfg)  # the same seed: the same initial weights
    loaded.load(run_dir / "checkpoint")
    first_conv = {"ppo": lambda a: a.encoder.cnn[0].weight, "dqn": lambda a: a.q_net[0].cnn[0].weight}[agent]
    assert not torch.equal(first_conv(fresh), first_conv(loaded))
    with pytest.raises(SystemExit) as done:
        evaluate_main([f"run={run_dir}", "episodes=2"])
    assert done.value.code == 0
    assert read_json(run_dir / "evaluation.json")["episodes"] == 2
