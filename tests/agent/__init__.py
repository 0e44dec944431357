"""Tests of `agent`; helpers in agent_testkit.py, the test trainer in fake_trainer.py."""
