"""`python -m gensearcher.testing --script script.json [--port 8000]`: serve a scripted policy."""

from gensearcher.testing.policy_server import main

main()
