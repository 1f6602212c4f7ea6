"""Hardware side of robo_reward: the ``Arm`` interface, the safety layer, ROS 2 / ROS 1 adapters, the
MuJoCo twin node and the deploy loop. It reads only the exported policy artifact and
never imports ``robo_reward``; its modules arrive with the deployment issue."""
