"""Human accounts: ops users and tenant admins, their sign-in, sessions and invitations."""
