"""The Kubernetes adapters: the only package that imports the official ``kubernetes`` client.

:mod:`.client` implements the provisioner loop's KubeApi port (typed APIs, merge patches, watch streams,
client-side rate limit); :mod:`.errors` turns the client's exceptions into the port's error tree;
:mod:`.nodeinfo` reads the Node object for node metadata. Decisions live elsewhere.
"""
