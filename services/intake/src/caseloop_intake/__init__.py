"""intake — screening (排查/受理): accepts cases raised by other government systems."""
