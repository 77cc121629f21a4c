"""The agent registry: a name on the command line -> the class that implements it.

Every agent is built as `cls(observation_space, action_space, config, seed)` and offers learn / act /
save / load (see base.py); its hyperparameters are the fields of `cls.Config`.
Modules are imported on first use, so listing agents does not import every dependency.
"""

from __future__ import annotations

from importlib import import_module

AGENTS: dict[str, str] = {
    # deep RL (ppo.py, dqn.py) and Stable-Baselines3 behind the same contract (sb3.py)
    "ppo": "rlgen.agents.ppo:PPO",
    "dqn": "rlgen.agents.dqn:DQN",
    "sb3_ppo": "rlgen.agents.sb3:SB3PPO",
    "sb3_dqn": "rlgen.agents.sb3:SB3DQN",
    "sb3_a2c": "rlgen.agents.sb3:SB3A2C",
    "sb3_maskable_ppo": "rlgen.agents.sb3:SB3MaskablePPO",
    # the policy gradients that share PPO's networks and loop (policy_gradient.py): A2C, REINFORCE
    "a2c": "rlgen.agents.a2c:A2C",
    "reinforce": "rlgen.agents.reinforce:REINFORCE",
    # tabular: dynamic programming, Monte Carlo, temporal difference, bandits
    "policy_evaluation": "rlgen.agents.dp:PolicyEvaluation",
    "policy_iteration": "rlgen.agents.dp:PolicyIteration",
    "value_iteration": "rlgen.agents.dp:ValueIteration",
    "mc_prediction": "rlgen.agents.mc:MCPrediction",
    "mc_control": "rlgen.agents.mc:MCControl",
    "mc_exploring_starts": "rlgen.agents.mc:MCExploringStarts",
    "mc_off_policy": "rlgen.agents.mc:MCOffPolicy",
    "td_prediction": "rlgen.agents.td:TDPrediction",
    "sarsa": "rlgen.agents.td:Sarsa",
    "expected_sarsa": "rlgen.agents.td:ExpectedSarsa",
    "q_learning": "rlgen.agents.td:QLearning",
    "double_q_learning": "rlgen.agents.td:DoubleQLearning",
    "epsilon_greedy": "rlgen.agents.bandit:EpsilonGreedyAgent",
    "ucb": "rlgen.agents.bandit:UCBAgent",
    "gradient_bandit": "rlgen.agents.bandit:GradientBanditAgent",
    "thompson_sampling": "rlgen.agents.bandit:ThompsonAgent",
    # maximum entropy
    "soft_value_iteration": "rlgen.agents.soft_q:SoftValueIteration",
    "soft_q_learning": "rlgen.agents.soft_q:SoftQLearning",
    "sql": "rlgen.agents.sql:SQL",
    # generative: aligning a language model to a hidden human (PPO with a reward model, direct alignment,
    # critic-free policy gradients); policies learned from an env's scripted expert
    "rlhf": "rlgen.agents.rlhf:RLHF",
    "dpo": "rlgen.agents.direct:DPO",
    "ipo": "rlgen.agents.direct:IPO",
    "kto": "rlgen.agents.direct:KTO",
    "grpo": "rlgen.agents.grpo:GRPO",
    "rloo": "rlgen.agents.grpo:RLOO",
    "bc": "rlgen.agents.bc:BC",
    "mdn": "rlgen.agents.bc:MDN",
    "ibc": "rlgen.agents.ibc:IBC",
    "diffusion": "rlgen.agents.diffusion:Diffusion",
    # generative models in RL: a discriminator as the reward (GAIL), PPO through a diffusion chain (DPPO)
    "gail": "rlgen.agents.gail:GAIL",
    "dppo": "rlgen.agents.dppo:DPPO",
}


def agent_class(name: str) -> type:
    """The class registered under `name` (its module is imported now, not before)."""
    module, _, attr = AGENTS[name].partition(":")
    return getattr(import_module(module), attr)


def config_class(name: str) -> type:
    return agent_class(name).Config
