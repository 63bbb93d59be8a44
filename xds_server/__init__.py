"""xds-server: an Envoy control plane that ships WebAssembly filters over ECDS and ADS."""

__all__ = ["__version__"]

__version__ = "0.1.0"
