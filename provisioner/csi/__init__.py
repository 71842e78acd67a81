"""The CSI gRPC layer: endpoint parsing, the server, interceptors (logging, error codes), thin
servicers and proto↔model conversion, and a CSI client. grpc and protobuf are imported only here
(and by the CLI). Servicers never catch exceptions: they raise domain errors and the interceptor in
:mod:`provisioner.csi.interceptors` turns them into status codes by the table in :mod:`.errors`."""
