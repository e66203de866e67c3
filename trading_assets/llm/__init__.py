"""The LLM market analysis: a per-session prompt from the market environment and the features of
the watchlist and benchmarks, answered by a model with four STDEV threshold multipliers.

- prompt.py: the prompt (features as a JSON block) and its hash, the cache key with the session;
- answer.py: the answer's JSON schema and its validation (a bad answer is an AnswerError naming why);
- clients.py: the OpenAI-compatible chat endpoint (urllib) and Bedrock's Converse API (boto3);
- resource.py: LLMResource (``none`` | ``openai`` | ``bedrock``), retries on throttling;
- analyse.py: one row per session (ok, fallback to 1.0 with its reason, or off), reusing stored answers;
- veto.py: the model as trade judge of stdev signals (core.backtest.veto runs the rounds).

No dagster import outside resource.py.
"""
