"""The jobs gateway: GraphQL and REST over video-encoding jobs."""

__version__ = "0.1.0"
