"""The password hasher's cost, chosen deliberately (README: "Passwords").

Django's default, PBKDF2-SHA256 at 1,000,000 iterations, took 1–5 s of a login on the
portal's small hosts: CPU time an attacker with GPUs pays far less for. Argon2id is
memory-hard, so guessing on GPUs costs memory as well as time; at OWASP's first
recommended setting (19 MiB, 2 passes, 1 lane) one check takes tens of milliseconds
(`python -m bench.login` measures the whole login). Stored hashes of other settings or
hashers still verify and are re-hashed at this setting on the next login.
"""

from django.contrib.auth.hashers import Argon2PasswordHasher


class PortalArgon2PasswordHasher(Argon2PasswordHasher):
    time_cost = 2
    memory_cost = 19 * 1024  # KiB
    parallelism = 1
