"""mlsync: declarative, Terraform-style sync for OpenSearch ML Commons."""

__version__ = "0.1.0"
