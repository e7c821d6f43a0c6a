"""The Feste conformance suite: one executable specification that every
implementation of the `reference.__all__` contract must pass.

Run it on the built-in implementations with `pytest`, or on your own with
`pytest --pyargs conformance --impl my.module`.
"""
