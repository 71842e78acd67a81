"""Pure topology functions (no I/O): zone choice for CreateVolume, the accessibility requirements a
claim produces, and PersistentVolume node affinity. Shared by the controller, the provisioner loop
and the ``explain`` tooling so all three make the same decision."""
