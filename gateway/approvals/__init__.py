"""Two-person control: sensitive operations wait for a second ops principal to approve."""
