"""Route 53 failover records: read the PRIMARY/SECONDARY pair of a write hostname and re-point it.

The only cloud DNS API mcrepl calls. The Pulumi program (``pulumi/``) creates the pair;
``mcrepl failover promote`` moves writes by pointing PRIMARY (and its health check) at the
new primary's host and SECONDARY at the old one (:mod:`mcrepl.failover.dns`).
"""

from .records import FailoverPair, Route53Records, SwitchResult

__all__ = ["FailoverPair", "Route53Records", "SwitchResult"]
