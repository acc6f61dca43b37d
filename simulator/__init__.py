"""The embedded Mureka API simulator and its job corpus: tooling for the demo, `mureka-etl dev` and the tests.

It stands in for https://api.useapi.net/v1/mureka on 127.0.0.1 (`server`), generates jobs (`corpus`), posts
webhook deliveries (`webhooks`) and serves the account feeds (`feeds`). The library never imports it.
"""
