"""View assembly: what each dashboard view needs from the service, handed to the pure figure builders."""
