"""``kaizen bench …``: tool speed, serving throughput and the AdaptFT staged benchmark."""
