"""placeholder"""
BUILDERS = {}
