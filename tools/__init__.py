"""kaizen tools: capabilities with typed inputs and outputs, usable alone (CLI) and by the agent.

Nothing here imports ``agent`` or ``workflows`` and nothing imports torch at module level, so
``import tools`` stays fast and works on machines without a GPU.
"""
