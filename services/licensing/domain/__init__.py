"""Licensing rules (L1-L8), keyed by the customer's normalised email. No I/O.

The aggregate is ``customer.Customer``; it keeps the state and records the events, and
asks small pure modules what the rules decide:

- ``policy``        the configurable terms (grace, warnings, moves, offline validity);
- ``plans``         one plan and its states over time; an upgrade's end (O7);
- ``appliances``    what is kept of each appliance and each move;
- ``entitlement``   which edition wins (L1), what one appliance may unlock (L4, L7), and
                    the allocation of plans to appliances (L5);
- ``timeline``      expiry warnings, expiry, grace, ``next_check_at`` (L6);
- ``registration``  tokens and appliance secrets (L2), where a new appliance goes and
                    moves (L5);
- ``rate_limits``   the sliding-window arithmetic of registration attempts (L2);
- ``views``         the status view for operations and the signed licence's claims (L3).
"""
