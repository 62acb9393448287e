async def receiver(packet_log, config):
    print(config.filter.strict)
