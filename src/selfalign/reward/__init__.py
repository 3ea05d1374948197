"""Preference models after Askell et al. 2021 and Bai et al. 2022: pairs (HH-RLHF transcripts and
verifiable self-made pairs), the ranking-loss PM through TRL's RewardTrainer, and its evaluation."""
