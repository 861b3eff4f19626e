"""Channel finishers: markup in, bytes out (pdf, email, sms); they never import each other."""
