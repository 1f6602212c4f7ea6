"""Importers: outside demonstrations (videos, ROS bags, LeRobot datasets) into the demo file layout."""
