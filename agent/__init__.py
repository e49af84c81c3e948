"""kaizen's LangGraph agent: state, nodes, routing, the graph factory and the brain."""
