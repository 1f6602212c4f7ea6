"""Hardware side of robo_reward: the ``Arm`` interface (``arm``), the safety layer (``safety``), ROS 2 / ROS 1
links (``ros2``, ``ros1``, ``ros_arm``), the MuJoCo twin node (``twin``), the deploy loop (``deploy``) and
the policy-artifact loader (``artifact``). It reads only the exported policy artifact and never imports
``robo_reward``: a robot computer needs numpy, onnxruntime, mujoco and its ROS client, not the training side."""
