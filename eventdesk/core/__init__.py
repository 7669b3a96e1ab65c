"""The Qt-free domain of EventDesk: envelope, workspace, secrets, capture, runtime."""
