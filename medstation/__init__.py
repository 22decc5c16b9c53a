"""medstation: a desktop radiology assistant with local AI."""

__version__ = "0.1.0"
