"""One phase per file. A node reads the state, calls tools, and returns a partial update."""
