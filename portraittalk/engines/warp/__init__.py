"""engines/warp"""
