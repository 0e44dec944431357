"""Stand-in for wandb/examples' examples/llama-cpp/evaluate.py.

The original asks a model (llama.cpp or OpenAI) to turn questions into Docker commands
and logs how close the answers are as `diff_score`; this one scores the sweep's
`model`, `system_prompt` and `temperature` (the long prompts with spaces arrive whole
through `wandb.config`) with a formula.
"""

from __future__ import annotations

import wandb


def main() -> None:
    run = wandb.init()
    config = run.config
    quality = {"gpt-3.5-turbo": 0.8}.get(config.model, 0.6) - config.temperature / 4
    run.log({"diff_score": quality + len(config.system_prompt.split()) / 1000})


if __name__ == "__main__":
    main()
