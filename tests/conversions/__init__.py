"""Tests of the conversion formats; ``conversions.receivers`` holds the platform stand-ins."""
