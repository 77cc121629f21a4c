"""RLHF at toy scale: generated corpus, hidden human, reward model, KL-regularised PPO."""
