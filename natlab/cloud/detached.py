"""Where an instance's ``ens5`` leads when no data plane attaches it: a per-run "detached" namespace.

The interface must exist (the boot script finds it by MAC and masquerades on it), but without an
emulated VPC there is nothing to plug it into. Its veth peer goes into one shared namespace, made
for the first such instance and deleted when the last one releases it.
"""

from __future__ import annotations

import threading

from .netns import Namespace
from .netns_links import veth_pair


class DetachedNamespace:
    """A refcounted namespace holding the far ends of unattached instances' veths."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ns: Namespace | None = None
        self._users = 0
        self._seq = 0

    def attach(self, ns: Namespace, ifname: str, mac: str, ip_cidr: str) -> None:
        """Gives ``ns`` the interface ``ifname`` (``mac``, ``ip_cidr``); pair with one ``release()``."""
        with self._lock:
            if self._ns is None:
                self._ns = Namespace("detached").open()
            self._users += 1
            self._seq += 1
            peer, far = f"d{self._seq}", self._ns
        try:
            veth_pair(ns, ifname, far, peer, mac_a=mac)
            ns.add_address(ifname, ip_cidr)
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        """One user fewer; the last one deletes the namespace."""
        with self._lock:
            self._users -= 1
            if self._users <= 0 and self._ns is not None:
                self._ns.close()
                self._ns, self._users = None, 0


#: The one detached namespace of this process.
DETACHED = DetachedNamespace()
