"""Engagement: tracking links and events, the web app, NPS and reports over the record."""
