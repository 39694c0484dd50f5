"""Guardrails: checks on a turn's input, output and tool arguments, run inside its activities.

- `detectors.py`: the local checks (PII with Luhn and IBAN sums, terms, regexes, length,
  prompt injection) and redaction;
- `checks.py`: one rail's checks over a text, network checks (LLM classifier, moderation,
  signed HTTP) with their fail modes;
- `rails.py`: the hooks the LLM and tool activities call, the violations they record
  (a row, a `guardrail.tripped` event and `steward_guardrail_trips_total`), and the
  activity that releases a reply a person reviewed.
"""
