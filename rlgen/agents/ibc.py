"""Implicit behavioural cloning (`ibc`): an energy E(s, a) learned from an env expert's demonstrations,
acting by a* = argmin_a E(s, a) (Florence et al. 2021, "Implicit Behavioral Cloning", CoRL; their code
google-research/ibc). Where the expert's action jumps or has several values, the energy keeps each
branch a sharp valley where a regression would interpolate or average (sec. 3 and 4).

Training: InfoNCE (eq. 3) against counter-examples drawn uniformly from the (scaled) action box.
Acting (`inference`): the derivative-free optimiser (appendix B.1), or Langevin dynamics (appendix B.3),
in which case training follows the paper's Langevin recipe too: the counter-examples are the output of
the same Langevin chain started from the uniform ones, and a gradient penalty keeps the energy's slope
where the chain's steps expect it. The samplers and losses are pure functions in rlgen/energy.py and
rlgen/losses.py. Soft Q-learning acts from the same kind of Boltzmann distribution over an energy
(-Q / alpha); there the energy is learned from rewards, here from demonstrations.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch

from rlgen.agents.bc import ImitationConfig, OneNetwork
from rlgen.config import check_choice, check_nonnegative, check_positive, check_range, named
from rlgen.energy import Energy, boltzmann_pick, dfo, energy_gradient, langevin, polynomial_step_sizes, uniform_actions
from rlgen.errors import UserError
from rlgen.losses import energy_gradient_penalty, info_nce_loss

INFERENCES = ("dfo", "langevin")
LANGEVIN_POWER = 2.0
"""exponent of the polynomial decay of Langevin's step size (ibc's langevin_actions_given_obs default)"""


@dataclass
class IBCConfig(ImitationConfig):
    name: str = "ibc"
    batch_size: int = 64
    inference: str = "dfo"
    """dfo: the derivative-free optimiser; langevin: Langevin dynamics, trained with Langevin
    counter-examples and the gradient penalty"""
    n_counter_examples: int = 32
    """counter-examples per demonstration in the InfoNCE loss"""
    dfo_counter_examples: int = 0
    """how many of the counter-examples are the derivative-free optimiser's outputs when training for
    it (ibc's fraction_dfo_samples as a count; the others stay uniform)"""
    dfo_samples: int = 1024
    """candidate actions per observation of the derivative-free optimiser"""
    dfo_iters: int = 3
    """energy evaluations of the derivative-free optimiser (resample + perturb between two)"""
    dfo_noise: float = 0.33
    """its first perturbation's standard deviation, in the scaled action box [-1, 1]"""
    dfo_shrink: float = 0.5
    """factor on the perturbation after each resampling"""
    langevin_samples: int = 64
    """Langevin chains per observation when acting"""
    langevin_counter_examples: int = 8
    """how many of the counter-examples are Langevin chains' outputs when training for Langevin (the
    others stay uniform; ibc's fraction_langevin_samples as a count)"""
    langevin_steps: int = 25
    """Langevin steps, when acting and for the training counter-examples"""
    langevin_step_size: float = 0.1
    """first Langevin step size; decays polynomially (power 2) to langevin_step_size_final"""
    langevin_step_size_final: float = 1e-5
    langevin_noise: float = 1.0
    """scale of Langevin's noise (1: ibc's; the chain's temperature is step size x noise^2)"""
    langevin_delta_clip: float = 0.1
    """largest move of one Langevin step on each action dimension"""
    grad_penalty: float = 1.0
    """weight of the gradient penalty when training for Langevin (0: none)"""
    grad_margin: float = 1.0
    """slope (max-norm of dE/da) that the penalty lets pass"""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("agent.inference", self.inference, INFERENCES)
        check_positive(**named(self, "n_counter_examples", "dfo_samples", "dfo_iters", "langevin_samples",
                               "langevin_counter_examples", "langevin_steps", "langevin_step_size",
                               "langevin_delta_clip"))
        if self.dfo_counter_examples > self.n_counter_examples:
            raise UserError(f"agent.dfo_counter_examples={self.dfo_counter_examples} must be at most "
                            f"agent.n_counter_examples={self.n_counter_examples} (it says how many of them are the "
                            "optimiser's)")
        if self.inference == "langevin" and self.langevin_counter_examples > self.n_counter_examples:
            raise UserError(f"agent.langevin_counter_examples={self.langevin_counter_examples} must be at most "
                            f"agent.n_counter_examples={self.n_counter_examples} (it says how many of them are "
                            "Langevin's)")
        check_nonnegative(**named(self, "dfo_counter_examples", "dfo_noise", "langevin_step_size_final",
                                  "langevin_noise", "grad_penalty", "grad_margin"))
        check_range(0, 1, open_low=True, why=" (a factor that shrinks the noise)", **named(self, "dfo_shrink"))


class IBC(OneNetwork):
    """An energy MLP over (normalised observation, scaled action), trained with InfoNCE; acts by the
    sampler's lowest-energy action among fresh candidates (deterministic) or a draw from softmax(-E) over
    its final samples."""

    Config = IBCConfig

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, config: IBCConfig, seed: int):
        super().__init__(observation_space, action_space, config, seed)
        self.step_sizes = polynomial_step_sizes(config.langevin_step_size, config.langevin_step_size_final,
                                                LANGEVIN_POWER, config.langevin_steps)

    @property
    def in_dim(self) -> int:
        return self.obs_dim + self.act_dim

    @property
    def out_dim(self) -> int:
        return 1

    def energy(self, obs: torch.Tensor) -> Energy:
        """E(s, .) for a batch of normalised observations (B, O): actions (B, N, D) -> energies (B, N)."""
        def of(actions: torch.Tensor) -> torch.Tensor:
            tiled = obs.unsqueeze(1).expand(-1, actions.shape[1], -1)  # (B, N, O)
            return self.net(torch.cat([tiled, actions], dim=-1)).squeeze(-1)
        return of

    def fit_step(self) -> dict[str, float]:
        c = self.config
        obs, actions = self.batch()
        energy = self.energy(obs)
        negatives = uniform_actions(len(obs), c.n_counter_examples, self.act_dim)  # torch's RNG: in checkpoints
        if c.inference == "langevin":
            # ibc trains its Langevin policy on the chain's output (its particle configs: all of them; here
            # langevin_counter_examples of them, for speed), not under the gradient: the chain only moves
            # counter-examples towards the energy's current minima, where the demonstration must win
            k = c.langevin_counter_examples
            chained = self.langevin(energy, negatives[:, :k], None)
            negatives = torch.cat([chained, negatives[:, k:]], dim=1)
        elif c.dfo_counter_examples > 0:
            # ibc's fraction_dfo_samples: the optimiser, seeded with all the uniform counter-examples, moves
            # them towards the energy's current minima; k of its outputs replace k uniform ones (hard
            # negatives sharpen the valley around the demonstration)
            k = c.dfo_counter_examples
            with torch.no_grad():
                optimised, _ = dfo(energy, negatives, c.dfo_iters, c.dfo_noise, c.dfo_shrink)
            negatives = torch.cat([optimised[:, :k], negatives[:, k:]], dim=1)
        both = torch.cat([actions.unsqueeze(1), negatives], dim=1)  # (B, 1 + N, D), the demonstration first
        penalised = c.inference == "langevin" and c.grad_penalty > 0
        if penalised:
            grad, energies = energy_gradient(energy, both, create_graph=True)
        else:
            energies = energy(both)
        nce = info_nce_loss(energies[:, 0], energies[:, 1:])
        stats = {"train/info_nce": float(nce.detach())}
        loss = nce
        if penalised:
            # on the final samples and the demonstrations (ibc: only_apply_final_grad_penalty = True)
            penalty = energy_gradient_penalty(grad, c.grad_margin)
            loss = nce + c.grad_penalty * penalty
            stats["train/grad_penalty"] = float(penalty.detach())
        return {**self.gradient_step(loss), **stats}

    def langevin(self, energy: Energy, samples: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        c = self.config
        return langevin(energy, samples, self.step_sizes, c.langevin_noise, c.langevin_delta_clip, generator=generator)

    def policy(self, obs: torch.Tensor, deterministic: bool) -> np.ndarray:
        c = self.config
        # fresh candidates on every call, from the acting generator (as ibc's policy draws them): with
        # fixed ones, a state with two minima would always get the same one
        generator, energy = self.generator, self.energy(obs)
        if c.inference == "dfo":
            samples = uniform_actions(len(obs), c.dfo_samples, self.act_dim, generator=generator)
            samples, energies = dfo(energy, samples, c.dfo_iters, c.dfo_noise, c.dfo_shrink, generator=generator)
        else:
            samples = uniform_actions(len(obs), c.langevin_samples, self.act_dim, generator=generator)
            samples = self.langevin(energy, samples, generator)
            energies = energy(samples)
        return boltzmann_pick(samples, energies, deterministic, generator).numpy()
