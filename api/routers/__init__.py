"""One thin router per resource: parse, authorise, call a service (`api/services/`), shape the answer."""
