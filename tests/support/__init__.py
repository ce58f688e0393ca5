"""Shared test support: private Exim and Dovecot, network namespaces, test users, SMTP sink.

Import as ``from tests.support.exim import PrivateExim`` (tests/conftest.py puts the repository
root on sys.path). See tests/support/README.md.
"""
