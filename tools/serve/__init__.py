"""The serving hand-off the agent and the eval backend need: the vLLM server subprocess and hot swap."""
