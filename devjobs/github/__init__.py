"""devjobs' reporting to GitHub.

- `statuses`: commit statuses with a token (`devjobs/<source>/<job>`);
- `app`: a GitHub App's identity (RS256 JWT, installation tokens);
- `checks`: check runs per job (pure payloads, and a client);
- `webhook`: signed `check_run`/`check_suite` re-run deliveries;
- `http`: the request-and-retry code they share (rate limits, 5xx, backoff).
"""
