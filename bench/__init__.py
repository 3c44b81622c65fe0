"""`python -m bench`: the bot's acknowledgement latency, overhead, event-loop stalls and memory (issue 6)."""
