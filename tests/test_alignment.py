"""Aligning the language model to the hidden human without PPO: DPO, IPO, KTO (rlgen/agents/direct.py),
GRPO and its loss variants, RLOO (rlgen/agents/grpo.py). Their losses and advantages against hand
computations and independent loops, the per-sequence log-probabilities and KL on a tiny GPT, each agent's
wiring of them, and short command-line runs: every method reports the gold reward, the proxy reward and the
KL, DPO fits its training pairs, the methods of one seed learn from the same cached labels, and a planted
cache is refused unread. Their hyperparameters' ranges are in tests/test_values.py, their resumption in
tests/test_resume.py, their checkpoints in tests/test_checkpoint_roundtrip.py."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import assert_user_error, read_csv, read_json, train_run
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from state_compare import assert_same
from test_tensorboard import served_scalars

from rlgen.agents.direct import KTO, pair_stats
from rlgen.checkpoint import TENSORS_FILE, load_state
from rlgen.compose import load_config
from rlgen.losses import dpo_loss, ipo_loss, kto_loss, token_loss_mean
from rlgen.nets.gpt import GPT, GPTConfig
from rlgen.returns import group_advantages, leave_one_out_advantages
from rlgen.rlhf.corpus import PROMPT_LEN
from rlgen.rlhf.sft import response_mask, sequence_kl, sequence_logprobs
from rlgen.trainer import build_agent, train

PROPERTY = settings(max_examples=60, deadline=None, derandomize=True, database=None)


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# -- direct alignment losses -----------------------------------------------------------------------------


def test_dpo_loss_is_minus_log_sigmoid_of_the_scaled_margin():
    h_w = torch.tensor([1.0, -2.0, 0.5, 30.0, 0.0])
    h_l = torch.tensor([0.0, 1.0, 0.5, -30.0, 4.0])
    beta = 0.1
    by_hand = np.mean([-math.log(sigmoid(beta * (w - l))) for w, l in zip(h_w.tolist(), h_l.tolist(), strict=True)])
    assert dpo_loss(h_w, h_l, beta).item() == pytest.approx(by_hand, rel=1e-6)
    assert dpo_loss(torch.zeros(3), torch.zeros(3), beta).item() == pytest.approx(math.log(2))  # the start
    assert dpo_loss(torch.tensor([-1e4]), torch.tensor([1e4]), 1.0).item() == pytest.approx(2e4)  # finite


def test_dpo_gradient_raises_the_chosen_log_ratio_and_lowers_the_rejected_one():
    h_w = torch.tensor([0.3, -1.0], requires_grad=True)
    h_l = torch.tensor([0.1, 2.0], requires_grad=True)
    beta = 0.5
    dpo_loss(h_w, h_l, beta).backward()
    assert (h_w.grad < 0).all() and (h_l.grad > 0).all()
    # d/dh_w of the mean of -log sigmoid(beta (h_w - h_l)) = -beta sigmoid(-beta (h_w - h_l)) / N
    expected = [-beta * sigmoid(-beta * (w - l)) / 2 for w, l in ((0.3, 0.1), (-1.0, 2.0))]
    torch.testing.assert_close(h_w.grad, torch.tensor(expected))
    torch.testing.assert_close(h_l.grad, -torch.tensor(expected))


def test_swapping_chosen_and_rejected_flips_the_implicit_reward_margin():
    h_w, h_l, beta = torch.tensor([1.0, -0.5, 2.0]), torch.tensor([0.0, 0.5, 2.5]), 0.2
    logp = torch.tensor([-10.0, -12.0, -9.0])
    stats = pair_stats(h_w, h_l, beta, logp, logp - 1)
    swapped = pair_stats(h_l, h_w, beta, logp - 1, logp)
    assert stats["rewards/margins"] == pytest.approx(beta * (h_w - h_l).mean().item())
    assert swapped["rewards/margins"] == pytest.approx(-stats["rewards/margins"])
    assert stats["rewards/accuracies"] == pytest.approx(1 / 3) and swapped["rewards/accuracies"] == pytest.approx(2 / 3)
    assert stats["rewards/chosen"] == pytest.approx(beta * h_w.mean().item())


@PROPERTY
@given(hnp.arrays(np.float32, 4, elements=st.floats(-20, 20, width=32)),
       hnp.arrays(np.float32, 4, elements=st.floats(-20, 20, width=32)), st.floats(-50, 50, width=32))
def test_dpo_and_ipo_see_only_the_margin(h_w, h_l, shift):
    """Shifting both log-ratios alike (a prompt-only term of the reward) changes neither loss (Rafailov et
    al. 2023, sec. 5: rewards of one equivalence class give the same preferences)."""
    w, l = torch.as_tensor(h_w, dtype=torch.float64), torch.as_tensor(h_l, dtype=torch.float64)
    for loss in (dpo_loss, ipo_loss):
        assert loss(w + shift, l + shift, 0.3).item() == pytest.approx(loss(w, l, 0.3).item(), rel=1e-9, abs=1e-9)


def test_ipo_loss_is_minimal_where_the_margin_is_one_over_two_tau():
    tau = 0.25  # the fixed point 1 / (2 tau) = 2
    assert ipo_loss(torch.tensor([3.0, 0.0]), torch.tensor([0.0, 1.0]), tau).item() == pytest.approx((1 + 9) / 2)
    for margin in (2.0, 1.0, 5.0):  # at, below and past the fixed point
        h_w = torch.tensor([margin + 0.5], requires_grad=True)
        loss = ipo_loss(h_w, torch.tensor([0.5]), tau)
        loss.backward()
        assert loss.item() == (margin - 2.0) ** 2 and h_w.grad.item() == 2 * (margin - 2.0)
    # unlike DPO, whose loss falls for every rise of the chosen log-ratio, even past the fixed point
    h_w = torch.tensor([5.0], requires_grad=True)
    dpo_loss(h_w, torch.tensor([0.0]), tau).backward()
    assert h_w.grad.item() < 0


def test_kto_loss_by_hand_with_a_reference_point_and_weights():
    ratio = torch.tensor([1.0, -1.0], requires_grad=True)
    desirable = torch.tensor([True, False])
    z0, beta, lam_d, lam_u = torch.tensor(0.5), 0.5, 2.0, 0.5
    loss = kto_loss(ratio, desirable, z0, beta, lam_d, lam_u)
    # desirable: lam_D - lam_D sigmoid(beta (1 - 0.5)); undesirable: lam_U - lam_U sigmoid(beta (0.5 + 1))
    by_hand = (lam_d * (1 - sigmoid(0.25)) + lam_u * (1 - sigmoid(0.75))) / 2
    assert loss.item() == pytest.approx(by_hand, rel=1e-6)
    loss.backward()
    s_d, s_u = sigmoid(0.25), sigmoid(0.75)
    grad = [-lam_d * beta * s_d * (1 - s_d), lam_u * beta * s_u * (1 - s_u)]  # d sigmoid = s (1 - s)
    torch.testing.assert_close(ratio.grad, torch.tensor(grad) / 2)
    # each weight scales its own kind of sample only
    one = torch.tensor([1.0, -1.0])
    d_only, u_only = torch.tensor([True, True]), torch.tensor([False, False])
    assert kto_loss(one, d_only, z0, beta, 3.0, 1.0).item() == pytest.approx(3 * kto_loss(one, d_only, z0, beta).item())
    assert kto_loss(one, d_only, z0, beta, 1.0, 7.0).item() == pytest.approx(kto_loss(one, d_only, z0, beta).item())
    assert kto_loss(one, u_only, z0, beta, 1.0, 3.0).item() == pytest.approx(3 * kto_loss(one, u_only, z0, beta).item())
    # a higher reference point (a policy further from its reference) makes a desirable sample's ratio worth less
    assert kto_loss(one, d_only, torch.tensor(2.0), beta).item() > kto_loss(one, d_only, z0, beta).item()


def test_kto_reference_point_pairs_each_prompt_with_the_next_completion():
    P = PROMPT_LEN
    seq = torch.arange(3 * (P + 3)).reshape(3, P + 3)
    other = KTO.mismatched(seq)
    assert other.shape == seq.shape
    torch.testing.assert_close(other[:, :P], seq[:, :P])
    for i in range(3):
        torch.testing.assert_close(other[i, P:], seq[(i + 1) % 3, P:])


# -- group advantages ---------------------------------------------------------------------------------------

GROUPS = hnp.arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(2, 6)),
                    elements=st.floats(-10, 10, allow_nan=False))


def test_group_advantages_by_hand():
    adv = group_advantages(np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 8.0]]))
    np.testing.assert_allclose(adv[0], np.array([-1.0, 0.0, 1.0]) / (1.0 + 1e-4))  # sample std 1
    np.testing.assert_allclose(adv[1], np.array([-1.0, -1.0, 2.0]) / (math.sqrt(3.0) + 1e-4))
    np.testing.assert_allclose(group_advantages(np.array([[1.0, 2.0, 3.0]]), scale=False), [[-1.0, 0.0, 1.0]])
    np.testing.assert_array_equal(group_advantages(np.full((1, 4), 7.0)), np.zeros((1, 4)))  # no signal, no blow-up


@PROPERTY
@given(GROUPS, st.floats(-100, 100), st.floats(0.5, 20))
def test_group_advantages_shift_scale_sum_and_independence(rewards, shift, scale):
    spread = rewards.std(axis=-1, ddof=1) > 0.1  # groups whose std makes eps = 1e-4 negligible
    scaled = group_advantages(scale * rewards + shift)
    np.testing.assert_allclose(scaled[spread], group_advantages(rewards)[spread], rtol=2e-3, atol=1e-6)
    plain = group_advantages(rewards, scale=False)
    np.testing.assert_allclose(group_advantages(rewards + shift, scale=False), plain, atol=1e-9)
    np.testing.assert_allclose(group_advantages(scale * rewards, scale=False), scale * plain, atol=1e-9)
    for scale_by_std, adv in ((True, group_advantages(rewards)), (False, plain)):
        np.testing.assert_allclose(adv.sum(axis=-1), 0.0, atol=1e-9)
        for p, group in enumerate(rewards):  # each group alone: what the others hold never matters
            np.testing.assert_array_equal(group_advantages(group[None], scale_by_std)[0], adv[p])


@PROPERTY
@given(GROUPS)
def test_leave_one_out_baseline_is_the_mean_of_the_others(rewards):
    P, k = rewards.shape
    loop = np.array([[rewards[p, i] - np.mean([rewards[p, j] for j in range(k) if j != i]) for i in range(k)]
                     for p in range(P)])
    adv = leave_one_out_advantages(rewards)
    np.testing.assert_allclose(adv, loop, atol=1e-9)
    # a known identity: r_i - mean of the others = k / (k - 1) (r_i - mean of all)
    np.testing.assert_allclose(adv, k / (k - 1) * (rewards - rewards.mean(axis=-1, keepdims=True)), atol=1e-9)


def test_a_samples_own_reward_never_moves_its_baseline():
    rewards = np.array([[1.0, 4.0, -2.0, 0.5]])
    baseline = rewards - leave_one_out_advantages(rewards)
    bumped = rewards.copy()
    bumped[0, 1] += 3.0
    moved = bumped - leave_one_out_advantages(bumped)
    assert moved[0, 1] == pytest.approx(baseline[0, 1])  # sample 1's own baseline stays
    np.testing.assert_allclose(np.delete(moved - baseline, 1), 1.0)  # the others' move by 3 / (k - 1)


# -- token losses -------------------------------------------------------------------------------------------


def test_token_loss_mean_reductions_by_hand():
    per_token = torch.tensor([[2.0, 0.0, 0.0, 0.0], [1.0, 3.0, 5.0, 0.0]])
    mask = torch.tensor([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0]])
    assert token_loss_mean(per_token, mask, "grpo").item() == pytest.approx((2.0 + 3.0) / 2)
    assert token_loss_mean(per_token, mask, "dapo").item() == pytest.approx(11.0 / 4)
    assert token_loss_mean(per_token, mask, "dr_grpo").item() == pytest.approx(11.0 / (2 * 4))
    assert token_loss_mean(per_token, mask, "dr_grpo", max_tokens=10).item() == pytest.approx(11.0 / (2 * 10))
    with pytest.raises(ValueError, match="unknown reduction 'grop'; one of grpo, dapo, dr_grpo"):
        token_loss_mean(per_token, mask, "grop")


def test_only_dr_grpo_weighs_a_longer_completion_more():
    """Doubling a completion's length (its per-token loss the same) doubles its part of Dr. GRPO's loss; GRPO
    divides it by its length again (Liu et al. 2025, sec. 3.1: the length bias they remove)."""
    per_token = torch.ones(2, 8)
    short, long = torch.zeros(2, 8), torch.zeros(2, 8)
    short[0, :2], long[0, :4] = 1.0, 1.0  # completion 0: 2 then 4 tokens; completion 1 absent from both
    assert token_loss_mean(per_token, long, "dr_grpo").item() == pytest.approx(
        2 * token_loss_mean(per_token, short, "dr_grpo").item())
    assert token_loss_mean(per_token, long, "grpo").item() == pytest.approx(
        token_loss_mean(per_token, short, "grpo").item())


# -- per-sequence log-probabilities and KL on a tiny GPT ------------------------------------------------------


def tiny_gpt(seed: int) -> GPT:
    """A GPT far from uniform (GPT-2's init of N(0, 0.02) predicts nearly uniformly, hiding off-by-one slips)."""
    gen = torch.Generator().manual_seed(seed)
    lm = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8)).eval()
    with torch.no_grad():
        for p in lm.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    return lm


def sequences() -> tuple[torch.Tensor, torch.Tensor]:
    """Three sequences of 8 tokens with a 3-token prompt, one ending early in padding (token 0)."""
    seq = torch.randint(1, 11, (3, 8), generator=torch.Generator().manual_seed(0))
    seq[1, 5:] = 0
    return seq, response_mask(seq, 3, 0)


def over_completions(seq: torch.Tensor, term) -> torch.Tensor:
    """Per sequence, the sum of term(prefix, token) over its generated tokens: each prefix passed alone."""
    return torch.tensor([sum(term(seq[b : b + 1, :t], seq[b, t]) for t in range(3, seq.shape[1]) if seq[b, t] != 0)
                         for b in range(len(seq))])


@torch.no_grad()
def test_sequence_logprobs_against_a_loop_over_prefixes():
    lm, (seq, mask) = tiny_gpt(0), sequences()
    loop = over_completions(seq, lambda prefix, token: F.log_softmax(lm(prefix)[0, -1], -1)[token].item())
    torch.testing.assert_close(sequence_logprobs(lm, seq, mask), loop, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_sequence_kl_against_a_loop_is_zero_for_the_model_itself_and_positive_otherwise():
    lm, ref, (seq, mask) = tiny_gpt(0), tiny_gpt(1), sequences()

    def kl(prefix: torch.Tensor, _) -> float:
        logp, logq = F.log_softmax(lm(prefix)[0, -1], -1), F.log_softmax(ref(prefix)[0, -1], -1)
        return (logp.exp() * (logp - logq)).sum().item()

    exact = sequence_kl(lm, ref, seq, mask)
    torch.testing.assert_close(exact, over_completions(seq, kl), rtol=1e-5, atol=1e-5)
    assert (exact > 0.1).all()
    assert (sequence_kl(lm, lm, seq, mask) == 0).all()


# -- each agent's use of them -----------------------------------------------------------------------------------


def group_agent(name: str, *overrides: str):
    return build_agent(load_config([f"agent={name}", "env=TextPreference", "agent.group_size=2",
                                    "agent.batch_size=4", *overrides]))


def test_grpo_and_dr_grpo_advantages_and_rloo_rewards_by_hand():
    score, kl = torch.tensor([1.0, 3.0, 10.0, 10.5]), torch.tensor([0.0, 2.0, 0.0, 0.0])
    s = math.sqrt(2.0)  # sample std of both pairs' scores: 2 / sqrt(2) and 0.5 / sqrt(2)
    torch.testing.assert_close(group_agent("grpo").advantages(score, kl),
                               torch.tensor([-1 / (s + 1e-4), 1 / (s + 1e-4), -0.25 / (0.5 / s + 1e-4),
                                             0.25 / (0.5 / s + 1e-4)]))
    torch.testing.assert_close(group_agent("grpo", "agent.loss=dr_grpo").advantages(score, kl),
                               torch.tensor([-1.0, 1.0, -0.25, 0.25]))
    # rloo: reward = score - beta KL = [1, 2, 10, 10.5]; the baseline of each is its sibling's reward
    torch.testing.assert_close(group_agent("rloo", "agent.beta=0.5").advantages(score, kl),
                               torch.tensor([-1.0, 1.0, -0.5, 0.5]))


@pytest.mark.parametrize(("loss", "expected"), [("grpo", -0.5), ("dapo", 0.25), ("dr_grpo", 1 / (2 * 26))])
def test_grpo_loss_averages_tokens_as_its_variant_says(loss, expected):
    """Two completions of 1 and 3 tokens, advantages 2 and -1, ratio 1: the per-token loss is -A; with the
    reference's log-probabilities 0.5 below, beta times k3 = e^-0.5 - 1 + 0.5 joins every token."""
    agent = group_agent("grpo", f"agent.loss={loss}", "agent.beta=0.1")
    mask = torch.tensor([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0]])
    logp, adv = torch.full((2, 4), -1.0), torch.tensor([2.0, -1.0])
    value, stats = agent.loss(logp, logp, logp, adv, mask)
    assert value.item() == pytest.approx(expected) and stats["train/clip_fraction"] == 0.0
    k3 = math.exp(-0.5) - 1 + 0.5
    value, stats = agent.loss(logp, logp, logp - 0.5, adv, mask)
    kl_part = 0.1 * k3 * (4 / (2 * 26) if loss == "dr_grpo" else 1.0)  # dr_grpo: 4 tokens / (B x 26)
    assert value.item() == pytest.approx(expected + kl_part) and stats["train/kl_k3"] == pytest.approx(k3)


def test_rloo_clips_the_ratio_of_the_whole_completion():
    """Three tokens each 0.1 more likely in log: the completion's ratio e^0.3 lies past 1 + 0.2, so its
    positive advantage gains only 1.2 A; a per-token ratio e^0.1 would not be clipped at all."""
    agent = group_agent("rloo", "agent.clip_range=0.2")
    mask = torch.tensor([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0]])
    old = torch.full((2, 4), -1.0)
    logp = old + torch.tensor([[0.0], [0.1]])
    value, stats = agent.loss(logp, old, old, torch.tensor([2.0, 1.0]), mask)
    assert value.item() == pytest.approx(-(2.0 + 1.2) / 2)
    assert stats["train/clip_fraction"] == 0.5


# -- command-line runs --------------------------------------------------------------------------------------

TINY = ("env=TextPreference", "eval_episodes=1", "agent.sft.steps=30", "agent.corpus.n_reviews=200",
        "agent.reward_model.n_pairs=64", "agent.reward_model.n_eval_pairs=32", "agent.reward_model.epochs=1",
        "agent.n_eval_prompts=16", "agent.bon_prompts=2", "agent.bon_samples=4")
DIRECT = ("total_steps=10", "eval_every=5", "agent.batch_size=16", "agent.monitor_every=1", "agent.monitor_samples=8")
GROUP = ("total_steps=600", "eval_every=300", "agent.batch_size=16", "agent.group_size=4", "agent.minibatch_size=8")
GOLD_MAX = 2.0
"""the gold score's maximum (tests/test_rlhf.py)"""

METHODS = {  # the scalars each method adds to progress.csv beside the rlhf/... ones
    "dpo": (DIRECT, ("rewards/accuracies", "rewards/margins", "logps/chosen")),
    "ipo": (DIRECT, ("rewards/accuracies", "rewards/margins")),
    "kto": ((*DIRECT, "agent.desirable_weight=1.2"), ("kl", "rewards/chosen", "count/desirable")),
    "grpo": ((*GROUP, "agent.loss=grpo"), ("train/clip_fraction", "train/kl_k3", "train/reward_std_in_group")),
    "dapo": ((*GROUP, "agent.loss=dapo"), ("train/clip_fraction", "train/kl_k3")),
    "dr_grpo": ((*GROUP, "agent.loss=dr_grpo"), ("train/clip_fraction", "train/kl_k3")),
    "rloo": (GROUP, ("train/clip_fraction", "train/advantage_abs")),
}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One SFT model (and seed 0's labels and reward model) for every run of this module."""
    return f"agent.cache_dir={tmp_path_factory.mktemp('cache')}"


def run_here(run_dir: Path, *overrides: str) -> Path:
    """A run in this process (no interpreter and torch start-up) that must complete."""
    summary, _ = train(load_config([*overrides, f"run_dir={run_dir}", "progress=false"]))
    assert summary["status"] == "completed"
    return run_dir


def agent_of(method: str) -> str:
    return "grpo" if method in ("dapo", "dr_grpo") else method


@pytest.mark.parametrize("method", list(METHODS))
def test_each_method_runs_and_reports_gold_proxy_and_kl(method, cache, tmp_path):
    overrides, scalars = METHODS[method]
    run = train_run(tmp_path / "run", f"agent={agent_of(method)}", *TINY, *overrides, cache)
    header, rows = read_csv(run / "eval.csv")
    assert {"gold_reward", "proxy_reward", "kl"} <= set(header)
    for row in rows:
        assert float(row["gold_reward"]) <= GOLD_MAX and math.isfinite(float(row["proxy_reward"]))
        assert float(row["kl"]) >= 0.0
    summary = read_json(run / "summary.json")
    assert summary["status"] == "completed" and int(rows[-1]["step"]) == summary["total_steps"]
    # the final figures are the last evaluation's: the same prompts, the same sampling noise, the same policy
    for key in ("gold_reward", "proxy_reward", "kl"):
        assert summary[f"{key}_final"] == pytest.approx(float(rows[-1][key]), rel=1e-9), key
    assert summary["kl_final"] > 0.0  # the policy has left its reference
    progress = read_csv(run / "progress.csv")[0]
    assert set(scalars) <= set(progress), set(scalars) - set(progress)
    shown = served_scalars(run)
    for tag in ("rlhf/gold_reward", "rlhf/kl", "rlhf/proxy_reward", "eval/gold_reward", "eval/kl"):
        assert shown.get(tag), tag
    assert (run / "REPORT.md").is_file() and (run / "rlhf.png").stat().st_size > 0


def test_dpo_fits_its_training_pairs(cache, tmp_path):
    """Thirty epochs over 64 labelled pairs: the implicit reward beta log-ratio comes to rank the pairs of
    the batches as labelled more often than at the start, where both log-ratios are 0 (loss log 2)."""
    run = run_here(tmp_path / "run", "agent=dpo", *TINY, "total_steps=60", "eval_every=0", "agent.batch_size=32",
                   "agent.monitor_every=1", "agent.monitor_samples=4", cache)
    rows = [r for r in read_csv(run / "progress.csv")[1] if r["rewards/accuracies"]]
    accuracy = [float(r["rewards/accuracies"]) for r in rows]
    loss = [float(r["train/loss"]) for r in rows]
    margin = [float(r["rewards/margins"]) for r in rows]
    assert len(rows) == 6  # every 10 gradient steps
    assert accuracy[-1] > accuracy[0] and accuracy[-1] > 0.5, accuracy
    assert loss[-1] < loss[0] < math.log(2), loss
    assert margin[-1] > margin[0] > 0, margin


def test_methods_of_one_seed_learn_from_the_same_cached_labels(cache, tmp_path):
    first = run_here(tmp_path / "dpo", "agent=dpo", *TINY, *DIRECT, "seed=7", cache)
    second = run_here(tmp_path / "grpo", "agent=grpo", *TINY, *GROUP, "seed=7", cache)
    other = run_here(tmp_path / "seed8", "agent=kto", *TINY, *DIRECT, "seed=8", cache)
    a, b, c = (load_state(run / "checkpoint") for run in (first, second, other))
    assert_same(a["prefs"], b["prefs"])  # chosen, rejected, singles, desirable, the proxy's normalisation
    assert_same(a["rm"], b["rm"])
    assert not a["info"]["preferences_cached"] and b["info"]["preferences_cached"]
    # the second run labelled nothing and trained no reward model
    stages = [set(read_json(run / "summary.json")["stage_seconds"]) for run in (first, second)]
    assert {"preferences", "reward_model", "best_of_n"} <= stages[0] and not stages[1] & {"preferences", "reward_model"}
    assert read_json(first / "summary.json")["gold_reward_sft"] == read_json(second / "summary.json")["gold_reward_sft"]
    assert not c["info"]["preferences_cached"]
    assert not torch.equal(a["prefs"]["chosen"], c["prefs"]["chosen"])  # another seed, other pairs


@pytest.mark.parametrize("monitor_every", [0, 5])
def test_direct_alignment_monitoring_less_often_than_every_step_finishes(monitor_every, cache, tmp_path):
    run_here(tmp_path / "run", "agent=dpo", *TINY, *DIRECT, f"agent.monitor_every={monitor_every}", cache)


def test_a_planted_preference_cache_is_refused_and_not_run(tmp_path, main_in_process):
    from test_checkpoint_safety import Payload

    args = ["agent=dpo", *TINY, *DIRECT, f"agent.cache_dir={tmp_path / 'cache'}", "progress=false"]
    assert main_in_process(*args, f"run_dir={tmp_path / 'first'}").returncode == 0
    [labels] = (tmp_path / "cache").glob("preferences-*")
    marker = tmp_path / "marker"
    (labels / TENSORS_FILE).write_bytes(pickle.dumps(Payload(marker)))
    out = main_in_process(*args, f"run_dir={tmp_path / 'second'}")
    assert_user_error(out, f"checkpoint {labels} is damaged or not an rlgen checkpoint",
                      "delete that preference cache")
    assert not marker.exists()


@pytest.mark.parametrize("agent", ["dpo", "grpo"])
def test_a_text_shorter_than_the_corpus_reviews_is_refused_before_the_run_starts(agent, tmp_path, main_in_process):
    out = main_in_process(f"agent={agent}", "env=TextPreference", "env.max_len=20", f"run_dir={tmp_path / 'run'}")
    assert_user_error(out, "env.max_len=20 is shorter than the longest review of the corpus (28 tokens",
                      "env.max_len=28 or more")
    assert not (tmp_path / "run").exists()
