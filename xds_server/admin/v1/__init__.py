"""Generated code for protos/xds_server/admin/v1/admin.proto (grpcio-tools); do not edit."""
