//! (filled in by the api_outage work)
