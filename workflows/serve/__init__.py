"""``kaizen serve``: the proxy app in front of vLLM and the processes it runs."""
